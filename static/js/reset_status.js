// Reset and unlock status: asks the server every second how the request is going and
// shows it (queued → resetting → sent / failed) until it has finished. Without
// JavaScript the page reloads itself instead (a meta refresh inside <noscript>).
(function () {
  "use strict";
  const box = document.getElementById("reset-status");
  if (!box || box.dataset.finished === "true") return;
  const url = box.dataset.statusUrl;
  const field = (name) => document.querySelector(`[data-field="${name}"]`);
  const steps = Array.from(box.querySelectorAll("ol.steps > li"));
  const POLL_MS = 1000;

  function show(progress) {
    const label = field("label");
    label.textContent = progress.label;
    label.classList.toggle("tag", progress.status === "failed");
    label.classList.toggle("tag-failed", progress.status === "failed");
    field("detail").textContent = progress.detail;
    const reason = field("reason");
    reason.textContent = progress.reason;
    reason.hidden = !progress.reason;
    if (progress.reason) reason.setAttribute("role", "alert");
    const again = field("again");
    if (again) again.hidden = progress.status !== "failed";
    steps.forEach((step, index) => {
      const { state, mark } = progress.steps[index]; // drawn by blink.console.reset_steps
      step.dataset.state = state;
      step.querySelector("[data-mark]").textContent = mark;
      if (state === "current") step.setAttribute("aria-current", "step");
      else step.removeAttribute("aria-current");
    });
    box.dataset.finished = String(progress.finished);
  }

  async function poll() {
    let response;
    try {
      response = await fetch(url, {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
      });
    } catch (error) {
      window.setTimeout(poll, POLL_MS); // the network blinked: ask again
      return;
    }
    if (response.ok) {
      const progress = await response.json();
      show(progress);
      if (progress.finished) return;
    } else if (response.status < 500) {
      // Signed out, or the request is gone: a reload says what happened.
      field("detail").textContent = "Reload the page to see how this request went.";
      return;
    }
    window.setTimeout(poll, POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();
