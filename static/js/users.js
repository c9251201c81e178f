// Blink Users: one action menu open at a time (Escape or a click elsewhere closes
// it), and a box that ticks every user on the page for "Resend activation".
(function () {
  "use strict";
  const menus = Array.from(document.querySelectorAll("details.menu"));

  function closeMenus(except) {
    menus.forEach((menu) => { if (menu !== except) menu.open = false; });
  }

  menus.forEach((menu) => {
    menu.addEventListener("toggle", () => { if (menu.open) closeMenus(menu); });
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest("details.menu")) closeMenus(null);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const open = menus.find((menu) => menu.open);
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });

  const tickPage = document.getElementById("tick-page");
  if (!tickPage) return;
  const rows = Array.from(document.querySelectorAll('input[name="ids"][form="bulk-form"]'));
  tickPage.hidden = rows.length === 0;
  tickPage.addEventListener("change", () => {
    rows.forEach((box) => { box.checked = tickPage.checked; });
  });
  rows.forEach((box) => {
    box.addEventListener("change", () => {
      const ticked = rows.filter((row) => row.checked).length;
      tickPage.checked = ticked === rows.length;
      tickPage.indeterminate = ticked > 0 && ticked < rows.length;
    });
  });
})();
