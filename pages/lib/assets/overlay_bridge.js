// Saliency Studio: the bridge between the overlay figure and the server.
// 1. The overlay's opacity slider runs in the browser (instant). When the user
//    settles on a value, it is reported to the server, so the PNG download, the
//    next figure and the shared link follow the same single value.
// 2. On a narrow screen, when a new image is explained, scroll its result into view.
export default function (component) {
  const { setStateValue, data } = component;
  const shared = window.__saliencyBridge || (window.__saliencyBridge = {});

  const overlayPlot = () => Array.from(document.querySelectorAll(".js-plotly-plot")).find(
    (p) => p.layout && p.layout.sliders && p.layout.sliders.length &&
      (p.data || []).some((t) => t.type === "heatmap"));

  const attach = () => {
    const plot = overlayPlot();
    if (!plot || typeof plot.on !== "function" || plot.__saliencyBridge) return;
    plot.__saliencyBridge = true;
    plot.on("plotly_sliderchange", (event) => {
      const value = parseFloat(event && event.step && event.step.label);
      if (Number.isNaN(value)) return;
      clearTimeout(shared.timer);
      shared.timer = setTimeout(() => setStateValue("opacity", value), 300);
    });
  };
  attach();
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
  return () => clearInterval(poll);
}
