// Blink User Setup: the OU / group tree arrives without its users; opening a node
// fetches that node's users as an HTML fragment, Expand All fetches every node's
// users in one request. A ticked OU or group stands for everyone in it, so the form
// sends the node's id (the server resolves it) rather than thousands of user ids.
(function () {
  "use strict";
  const form = document.getElementById("setup-form");
  const tree = document.getElementById("tree");
  const picker = document.getElementById("client-picker");
  if (picker) {
    picker.querySelectorAll("[data-no-js]").forEach((el) => { el.hidden = true; });
    picker.elements.client.addEventListener("change", () => picker.submit());
  }
  if (!form || !tree) return;
  const search = document.getElementById("setup-search");
  const results = document.getElementById("search-results");
  const ticked = document.getElementById("ticked");
  form.querySelectorAll("[data-js-only]").forEach((el) => { el.hidden = false; });

  async function fetchHtml(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    return template.content;
  }

  function problem(text, tag = "li") {
    const item = document.createElement(tag);
    item.className = "errors";
    item.setAttribute("role", "alert");
    item.textContent = text;
    return item;
  }

  function nodeTick(node) {
    return node ? node.querySelector(":scope > input.tick") : null;
  }

  // Users arriving inside a ticked node are ticked too: the node covers them.
  function inherit(list) {
    const tick = nodeTick(list.closest("li.node"));
    if (tick && tick.checked) {
      list.querySelectorAll("input[type=checkbox]:not(:disabled)").forEach((box) => {
        box.checked = true;
      });
    }
  }

  async function load(list, offset) {
    list.dataset.state = "loading";
    const url = `${tree.dataset.nodeUrl}?node=${encodeURIComponent(list.dataset.users)}&offset=${offset}`;
    try {
      const content = await fetchHtml(url);
      if (offset === 0) {
        list.replaceChildren(content);
      } else {
        const more = list.querySelector(":scope > li.more");
        if (more) more.remove();
        list.append(content);
      }
      list.dataset.state = "loaded";
      inherit(list);
    } catch (error) {
      list.dataset.state = "";
      list.replaceChildren(problem("These users could not be loaded. Close this node and open it again to retry."));
    }
  }

  // "toggle" does not bubble; listening in the capture phase sees every node's.
  tree.addEventListener("toggle", (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open) return;
    const list = details.querySelector(":scope > ul.users");
    if (list && !list.dataset.state) load(list, 0);
  }, true);
  // Nodes the page opened itself may have fired "toggle" before this script ran.
  tree.querySelectorAll("details[open] > ul.users").forEach((list) => {
    if (!list.dataset.state) load(list, 0);
  });

  form.addEventListener("click", (event) => {
    const more = event.target.closest("[data-more]");
    if (more) {
      more.disabled = true;
      load(more.closest("ul.users"), Number(more.dataset.offset));
      return;
    }
    const button = event.target.closest("button[data-action]");
    if (button) actions[button.dataset.action](button);
  });

  function uncheckAncestors(box) {
    let node = box.closest("li.node");
    if (box.classList.contains("tick") && node) node = node.parentElement.closest("li.node");
    for (; node; node = node.parentElement.closest("li.node")) {
      const tick = nodeTick(node);
      if (tick && tick.checked) {
        tick.checked = false;
        tick.indeterminate = true;
      }
    }
  }

  form.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    box.indeterminate = false;
    let copies = [box];
    if (box.classList.contains("tick")) {
      box.closest("li.node").querySelectorAll("input[type=checkbox]:not(:disabled)").forEach((inner) => {
        inner.checked = box.checked;
        inner.indeterminate = false;
      });
    } else if (box.name === "user") {
      // One person can show in several groups and in the search results.
      copies = Array.from(form.querySelectorAll(`input[name=user][value="${CSS.escape(box.value)}"]`));
      copies.forEach((copy) => { copy.checked = box.checked; });
    }
    if (!box.checked) copies.forEach(uncheckAncestors);
    count();
  });

  // A box inside a ticked node is covered by the node: leave it out of the post.
  function covered() {
    const boxes = [];
    form.querySelectorAll("li.node > input.tick:checked").forEach((tick) => {
      tick.parentElement.querySelectorAll("input[type=checkbox]:checked").forEach((box) => {
        if (box !== tick) boxes.push(box);
      });
    });
    return new Set(boxes);
  }

  function count() {
    if (!ticked) return;
    const skip = covered();
    const nodes = { ou: 0, group: 0, root: 0 };
    const users = new Set();
    form.querySelectorAll("input[type=checkbox]:checked").forEach((box) => {
      if (skip.has(box)) return;
      if (box.name === "user") users.add(box.value);
      else if (box.name in nodes) nodes[box.name] += 1;
    });
    const parts = [];
    const say = (n, one, many) => { if (n) parts.push(`${n} ${n === 1 ? one : many}`); };
    say(nodes.ou, "OU", "OUs");
    say(nodes.group, "group", "groups");
    say(nodes.root, "list of users outside OUs", "lists of users outside OUs");
    say(users.size, "user", "users");
    ticked.textContent = parts.length ? `Ticked: ${parts.join(", ")}` : "";
  }

  form.addEventListener("submit", () => {
    covered().forEach((box) => {
      box.disabled = true;
      box.dataset.covered = "1";
    });
  });
  // Coming back with the Back button shows the page as it was left: undo the above.
  window.addEventListener("pageshow", () => {
    form.querySelectorAll("[data-covered]").forEach((box) => {
      box.disabled = false;
      delete box.dataset.covered;
    });
  });

  const actions = {
    async expand(button) {
      const pending = Array.from(tree.querySelectorAll("ul.users")).filter((list) => !list.dataset.state);
      if (pending.length) {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
        pending.forEach((list) => { list.dataset.state = "loading"; });
        try {
          const content = await fetchHtml(tree.dataset.expandUrl);
          content.querySelectorAll("ul[data-users]").forEach((source) => {
            const list = tree.querySelector(`ul.users[data-users="${CSS.escape(source.dataset.users)}"]`);
            if (list && list.dataset.state === "loading") {
              list.replaceChildren(...source.childNodes);
              list.dataset.state = "loaded";
              inherit(list);
            }
          });
        } catch (error) {
          pending.forEach((list) => { list.dataset.state = ""; });
          tree.prepend(problem("The users could not be loaded. Try Expand All again.", "p"));
        } finally {
          pending.forEach((list) => {
            if (list.dataset.state === "loading") list.dataset.state = "";
          });
          button.disabled = false;
          button.removeAttribute("aria-busy");
        }
      }
      tree.querySelectorAll("details").forEach((details) => { details.open = true; });
    },
    collapse() {
      tree.querySelectorAll("details[open]").forEach((details) => { details.open = false; });
    },
    check() {
      tree.querySelectorAll("input[type=checkbox]:not(:disabled)").forEach((box) => {
        box.checked = true;
        box.indeterminate = false;
      });
      count();
    },
    uncheck() {
      form.querySelectorAll("input[type=checkbox]").forEach((box) => {
        box.checked = false;
        box.indeterminate = false;
      });
      count();
    },
  };

  // Search as you type; the tree steps aside while there is a query.
  if (search && results) {
    const input = search.elements.q;
    let timer = null;
    let latest = 0;
    async function run() {
      const ticket = ++latest;
      const query = input.value.trim();
      const address = new URL(window.location.href);
      if (query) address.searchParams.set("q", query); else address.searchParams.delete("q");
      window.history.replaceState(null, "", address);
      if (!query) {
        results.replaceChildren();
        tree.hidden = false;
        return;
      }
      try {
        const content = await fetchHtml(`${search.dataset.url}?q=${encodeURIComponent(query)}`);
        if (ticket !== latest) return; // a newer query is on its way
        results.replaceChildren(content);
        tree.hidden = true;
        count();
      } catch (error) {
        if (ticket === latest) results.replaceChildren(problem("The search failed. Try again.", "p"));
      }
    }
    search.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(timer);
      run();
    });
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(run, 250);
    });
  }
  count();
})();
