// paydesk: the little JavaScript the staff pages need (no inline scripts: the CSP forbids them).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  // <body hx-headers:inherited> already sends X-CSRFToken; an element that sets its own
  // hx-headers replaces the inherited ones, so make sure every unsafe request still has it.
  document.addEventListener("htmx:config:request", function (evt) {
    var request = evt.detail && evt.detail.ctx && evt.detail.ctx.request;
    if (!request) return;
    if (/^GET$/i.test(request.method || "GET")) {
      // Filter forms: leave empty fields out of the query string, so pushed URLs stay short to share.
      if (request.body && typeof request.body.entries === "function") {
        var kept = new FormData();
        for (var pair of request.body.entries()) {
          if (pair[1] !== "") kept.append(pair[0], pair[1]);
        }
        request.body = kept;
      }
      return;
    }
    if (/^(HEAD|OPTIONS)$/i.test(request.method)) return;
    request.headers = request.headers || {};
    if (!request.headers["X-CSRFToken"] && csrfToken()) {
      request.headers["X-CSRFToken"] = csrfToken();
    }
  });

  var FALLBACK = {
    400: "The request was refused. Reload the page and try again.",
    403: "You do not have permission to do that.",
    404: "That no longer exists.",
    500: "Something went wrong on our side. Please try again."
  };

  function toast(message, tone) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (tone || "error");
    item.setAttribute("role", "alert");
    var text = document.createElement("span");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "\u00d7";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(text);
    item.appendChild(close);
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 10000);
  }

  function messageFrom(ctx) {
    var status = ctx.response.status;
    try {
      var doc = new DOMParser().parseFromString(ctx.text || "", "text/html");
      var node = doc.querySelector("[data-toast]");
      if (node && node.textContent.trim()) return node.textContent.trim();
    } catch (e) { /* fall through */ }
    return FALLBACK[status] || FALLBACK[Math.floor(status / 100) * 100] || ("Request failed (" + status + ").");
  }

  // htmx 4 swaps error responses unless told otherwise; <meta name="htmx-config"> stops
  // 40x and 5xx from swapping, and they are shown here. 422 is swapped into its form.
  document.addEventListener("htmx:response:error", function (evt) {
    var ctx = evt.detail && evt.detail.ctx;
    if (!ctx || !ctx.response) return;
    var status = ctx.response.status;
    if (status === 422 || status === 429) return;
    if (ctx.response.headers && ctx.response.headers.get("HX-Redirect")) return;
    toast(messageFrom(ctx), status >= 500 ? "error" : "warning");
  });

  document.addEventListener("htmx:error", function (evt) {
    var ctx = evt.detail && evt.detail.ctx;
    if (ctx && ctx.response) return;  // an HTTP error: handled above
    toast("Could not reach paydesk (network error or timeout). Please try again.", "error");
  });

  // List pages: "select every event on this page", "select all matching", dismiss a dialog, copy text.
  document.addEventListener("change", function (evt) {
    var el = evt.target;
    if (!el || !el.form) return;
    if (el.classList.contains("select-page")) {
      el.form.querySelectorAll('input[name="ids"]').forEach(function (box) { box.checked = el.checked; });
    } else if (el.classList.contains("select-all-matching") && el.checked) {
      el.form.querySelectorAll('input[name="ids"], .select-page').forEach(function (box) { box.checked = true; });
    } else if (el.name === "ids" && !el.checked) {
      var all = el.form.querySelector(".select-all-matching");
      if (all) all.checked = false;
    }
  });

  // A table wider than the screen scrolls inside its .table-wrap: make that box reachable by keyboard
  // (arrow keys scroll it), and only then, so a desktop keeps no extra tab stops.
  function scrollableTables() {
    document.querySelectorAll(".table-wrap").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.setAttribute("tabindex", "0");
      } else {
        box.removeAttribute("tabindex");
      }
    });
  }
  document.addEventListener("DOMContentLoaded", scrollableTables);
  document.addEventListener("htmx:after:swap", scrollableTables);
  window.addEventListener("resize", function () {
    clearTimeout(scrollableTables.timer);
    scrollableTables.timer = setTimeout(scrollableTables, 150);
  });

  document.addEventListener("click", function (evt) {
    var el = evt.target && evt.target.closest && evt.target.closest("[data-dismiss], [data-copy]");
    if (!el) return;
    if (el.hasAttribute("data-dismiss")) {
      var box = document.querySelector(el.getAttribute("data-dismiss"));
      if (box) box.innerHTML = "";
    } else {
      var source = document.querySelector(el.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) return;
      var label = el.textContent;
      navigator.clipboard.writeText(source.textContent).then(function () {
        el.textContent = "Copied";
        setTimeout(function () { el.textContent = label; }, 1500);
      });
    }
  });
})();
