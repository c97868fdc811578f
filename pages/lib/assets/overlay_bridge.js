// Saliency Studio: the bridge between the overlay figure and the server.
// 1. The overlay's opacity slider runs in the browser (instant). When the user
//    settles on a value, it is reported to the server, so the PNG download, the
//    next figure and the shared link follow the same single value.
// 2. On a narrow screen, when a new image is explained, scroll its result into view.
export default function (component) {
  const { setStateValue, data } = component;
  const shared = window.__saliencyBridge || (window.__saliencyBridge = {});

  // Every overlay figure on the page: while Streamlit redraws, the old figure and the
  // new one can both be there for a moment, and the user may drag either.
  const overlayPlots = () => Array.from(document.querySelectorAll(".js-plotly-plot")).filter(
    (p) => p.layout && p.layout.sliders && p.layout.sliders.length &&
      (p.data || []).some((t) => t.type === "heatmap"));

  const attach = () => {
    for (const plot of overlayPlots()) {
      if (typeof plot.on !== "function" || plot.__saliencyBridge) continue;
      plot.__saliencyBridge = true;
      plot.on("plotly_sliderchange", (event) => {
        const value = parseFloat(event && event.step && event.step.label);
        if (Number.isNaN(value)) return;
        clearTimeout(shared.timer);
        shared.timer = setTimeout(() => setStateValue("opacity", value), 300);
      });
    }
  };
  attach();
  // A new figure is listened to as soon as Plotly draws it (a slider moved in the first
  // half second after a redraw was lost with polling alone); the poll stays as a backstop.
  let pending = false;
  const observer = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; attach(); });
  });
  observer.observe(document.body, { childList: true, subtree: true });
  const poll = setInterval(attach, 500);

  const token = data && data.scroll_token;
  if (token !== undefined && token !== shared.lastToken) {
    const firstView = shared.lastToken === undefined;
    shared.lastToken = token;
    if (!firstView && window.matchMedia("(max-width: 640px)").matches) {
      const scroll = (triesLeft) => {
        const target = document.querySelector(".st-key-result");
        if (!target) {
          if (triesLeft > 0) setTimeout(() => scroll(triesLeft - 1), 200);
          return;
        }
        // Streamlit scrolls its main block, not the window; leave room for its header.
        const scroller = document.querySelector("[data-testid='stMain']");
        const offset = target.getBoundingClientRect().top - 64;
        if (scroller && scroller.scrollHeight > scroller.clientHeight) {
          scroller.scrollBy({ top: offset, behavior: "smooth" });
        } else {
          window.scrollBy({ top: offset, behavior: "smooth" });
        }
      };
      setTimeout(() => scroll(20), 150);
    }
  }
  return () => { clearInterval(poll); observer.disconnect(); };
}
