// Saliency Studio: tells the Live page whether this browser can give it a camera.
// The stream component shows a denied or missing camera only inside its own frame and
// never tells the server, so this looks at what it shows (its frame has the page's
// origin), at the camera permission and at the list of devices, and reports one word:
// "ok", "denied", "unavailable" (no camera, or one in use), or "insecure" (no camera
// API: the page is not served over HTTPS or from localhost).
export default function (component) {
  const { setStateValue } = component;
  let last;
  const report = (state) => {
    if (state !== last) {
      last = state;
      setStateValue("camera", state);
    }
  };
  const DENIED = /NotAllowedError|Access denied|Permission denied/;
  const UNAVAILABLE = /NotFoundError|NotReadableError|OverconstrainedError|Device not available/;
  const streamDocuments = () => {
    const found = [];
    for (const frame of document.querySelectorAll("iframe")) {
      try {
        if ((frame.title || "").includes("webrtc")) found.push(frame.contentDocument);
      } catch (e) { /* another origin: nothing to read */ }
    }
    return found;
  };
  // textContent, not innerText: it still holds an alert hidden below
  const streamText = () => streamDocuments().map((d) => d.body.textContent).join(" ");
  // The page says what a denied or missing camera means in its own words; the component's
  // raw error ("NotAllowedError: Permission denied") beside it would only confuse.
  const hideRawErrors = () => {
    for (const doc of streamDocuments()) {
      for (const alert of doc.querySelectorAll("[role=alert]")) {
        if (DENIED.test(alert.textContent) || UNAVAILABLE.test(alert.textContent)) {
          alert.style.display = "none";
        }
      }
    }
  };
  const check = async () => {
    if (!window.isSecureContext || !navigator.mediaDevices ||
        !navigator.mediaDevices.getUserMedia) {
      report("insecure");
      return;
    }
    const shown = streamText();
    if (DENIED.test(shown)) {
      report("denied");
      hideRawErrors();
      return;
    }
    if (UNAVAILABLE.test(shown)) {
      report("unavailable");
      hideRawErrors();
      return;
    }
    try {
      const permission = await navigator.permissions.query({ name: "camera" });
      if (permission.state === "denied") {
        report("denied");
        return;
      }
    } catch (e) { /* this browser cannot tell: carry on */ }
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      if (!devices.some((d) => d.kind === "videoinput")) {
        report("unavailable");
        return;
      }
    } catch (e) { /* carry on */ }
    report("ok");
  };
  check();
  const poll = setInterval(check, 1000);
  return () => clearInterval(poll);
}
