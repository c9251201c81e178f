// Live preview of the activation email: after each pause in typing, the form's
// unsaved values are rendered by the server (the same templates the real email
// uses) and shown in the sandboxed frame. Nothing is saved until "Save branding".
(function () {
  "use strict";
  const form = document.getElementById("branding-form");
  const frame = document.getElementById("email-preview");
  const warnings = document.getElementById("colour-warnings");
  if (!form || !frame) return;
  let timer = null;
  let latest = 0;

  async function refresh() {
    const ticket = ++latest;
    const data = new FormData(form);
    data.delete("logo");
    const response = await fetch(form.dataset.previewUrl, {
      method: "POST",
      body: data,
      headers: { "X-Requested-With": "fetch" },
      credentials: "same-origin",
    });
    if (ticket !== latest) return; // a newer edit is already on its way
    const body = await response.json().catch(() => null);
    if (!response.ok || !body || !body.html) return; // the form shows errors on save
    frame.srcdoc = body.html;
    warnings.replaceChildren(
      ...body.warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      })
    );
  }

  form.addEventListener("input", (event) => {
    if (event.target.name === "logo") return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
