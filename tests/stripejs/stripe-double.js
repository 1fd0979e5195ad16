// A Stripe.js test double: the part of Stripe.js's public API that paydesk's donate.js uses,
// talking to localstripe through tests/stripejs/server.py (which serves this file). Tests only:
// production loads the real Stripe.js from PAYDESK_STRIPE_JS_URL.
//
//   Stripe(publishableKey)
//     .elements().create("card", {hidePostalCode, value: {postalCode}, style})
//        element.mount(selector) / .on("change", fn) / .update({value: {postalCode}}) / .focus()
//        change events: {elementType, empty, complete, error, value: {postalCode}, brand}
//     .createPaymentMethod({type: "card", card: element, billing_details})
//        the element's postcode goes into billing_details.address.postal_code, as Stripe.js does
//     .confirmCardPayment(clientSecret): runs 3-D Secure in a frame (Complete / Fail), as Stripe.js
//        does with its own frame, and resolves {paymentIntent} or {error}
(function () {
  "use strict";
  var ORIGIN = new URL(document.currentScript.src).origin;

  function flatten(value, prefix, out) {
    if (value === null || value === undefined) return out;
    if (typeof value === "object") {
      Object.keys(value).forEach(function (k) { flatten(value[k], prefix ? prefix + "[" + k + "]" : k, out); });
    } else {
      out.append(prefix, String(value));
    }
    return out;
  }

  function api(method, path, params) {
    var body = flatten(params || {}, "", new URLSearchParams());
    var url = ORIGIN + path + (method === "GET" ? "?" + body.toString() : "");
    var init = method === "GET" ? { method: "GET" } : { method: method, body: body };
    return fetch(url, init).then(function (r) {
      return r.json().then(function (json) { return { ok: r.ok, body: json }; });
    });
  }

  function luhn(digits) {
    var sum = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = +digits[digits.length - 1 - i];
      if (i % 2) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function CardElement(options) {
    this.options = options || {};
    this.handlers = {};
    this.inputs = {};
    this.postalCode = (this.options.value && this.options.value.postalCode) || "";
  }

  CardElement.prototype.mount = function (target) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    var self = this;
    var row = document.createElement("div");
    row.style.display = "flex";
    row.style.flexWrap = "wrap";
    row.style.gap = "8px";
    var specs = [
      ["number", "Card number", "1234 1234 1234 1234", "cc-number", "12em"],
      ["expiry", "Expiration date (MM / YY)", "MM / YY", "cc-exp", "5.5em"],
      ["cvc", "Security code (CVC)", "CVC", "cc-csc", "4.5em"]
    ];
    if (!this.options.hidePostalCode) specs.push(["postal", "ZIP or postal code", "ZIP", "postal-code", "6em"]);
    specs.forEach(function (spec) {
      var input = document.createElement("input");
      input.type = "text";
      input.setAttribute("aria-label", spec[1]);
      input.placeholder = spec[2];
      input.autocomplete = spec[3];
      input.setAttribute("data-stripe-double", spec[0]);
      if (spec[0] !== "postal") input.inputMode = "numeric";
      input.style.flex = "1 1 " + spec[4];
      input.style.minWidth = "0";
      input.style.font = "inherit";
      input.style.border = "0";
      input.style.padding = "4px";
      input.style.background = "transparent";
      input.addEventListener("input", function () { self._emit(); });
      self.inputs[spec[0]] = input;
      row.appendChild(input);
    });
    if (this.inputs.postal) this.inputs.postal.value = this.postalCode;
    host.appendChild(row);
    this._emitNamed("ready", { elementType: "card" });
  };

  CardElement.prototype.on = function (name, fn) {
    (this.handlers[name] = this.handlers[name] || []).push(fn);
    return this;
  };

  CardElement.prototype._emitNamed = function (name, event) {
    (this.handlers[name] || []).forEach(function (fn) { fn(event); });
  };

  CardElement.prototype.update = function (options) {
    if (options && options.value && typeof options.value.postalCode === "string") {
      this.postalCode = options.value.postalCode;
      if (this.inputs.postal) this.inputs.postal.value = this.postalCode;
    }
    if (options && "hidePostalCode" in options) this.options.hidePostalCode = options.hidePostalCode;
  };

  CardElement.prototype.focus = function () { if (this.inputs.number) this.inputs.number.focus(); };

  CardElement.prototype._read = function () {
    var number = (this.inputs.number ? this.inputs.number.value : "").replace(/\D/g, "");
    var exp = (this.inputs.expiry ? this.inputs.expiry.value : "").replace(/\D/g, "");
    var cvc = (this.inputs.cvc ? this.inputs.cvc.value : "").replace(/\D/g, "");
    if (this.inputs.postal) this.postalCode = this.inputs.postal.value.trim();
    return { number: number, month: +exp.slice(0, 2), year: 2000 + +exp.slice(2, 4), expLength: exp.length, cvc: cvc };
  };

  // [error for a full but wrong value, error for an unfinished one], Stripe's wording.
  CardElement.prototype._problems = function (c) {
    var now = new Date();
    var out = [];
    if (c.number.length < 16) out.push([null, { code: "incomplete_number", message: "Your card number is incomplete." }]);
    else if (!luhn(c.number)) out.push([{ code: "invalid_number", message: "Your card number is invalid." }]);
    if (c.expLength < 4) out.push([null, { code: "incomplete_expiry", message: "Your card's expiration date is incomplete." }]);
    else if (c.month < 1 || c.month > 12) out.push([{ code: "invalid_expiry_month", message: "Your card's expiration date is invalid." }]);
    else if (c.year < now.getFullYear() || (c.year === now.getFullYear() && c.month < now.getMonth() + 1)) {
      out.push([{ code: "invalid_expiry_year_past", message: "Your card's expiration year is in the past." }]);
    }
    if (c.cvc.length < 3) out.push([null, { code: "incomplete_cvc", message: "Your card's security code is incomplete." }]);
    if (this.inputs.postal && !this.postalCode) out.push([null, { code: "incomplete_zip", message: "Your postal code is incomplete." }]);
    return out;
  };

  CardElement.prototype._emit = function () {
    var c = this._read();
    var problems = this._problems(c);
    var shown = problems.filter(function (p) { return p[0]; })[0];
    this._emitNamed("change", {
      elementType: "card",
      empty: !c.number && !c.expLength && !c.cvc,
      complete: problems.length === 0,
      brand: c.number ? "visa" : "unknown",
      error: shown ? { type: "validation_error", code: shown[0].code, message: shown[0].message } : undefined,
      value: this.inputs.postal ? { postalCode: this.postalCode } : {}
    });
  };

  function Stripe(key) {
    if (!(this instanceof Stripe)) return new Stripe(key);
    if (typeof key !== "string" || key.indexOf("pk_") !== 0) throw new Error("Stripe(): a publishable key (pk_...) is required");
    this.key = key;
  }

  Stripe.prototype.elements = function () {
    return { create: function (type, options) {
      if (type !== "card") throw new Error("the Stripe.js test double only has the card element");
      return new CardElement(options);
    } };
  };

  Stripe.prototype.createPaymentMethod = function (data) {
    var card = data.card;
    var c = card._read();
    var problem = card._problems(c)[0];
    if (problem) {
      var e = problem[0] || problem[1];
      return Promise.resolve({ error: { type: "validation_error", code: e.code, message: e.message } });
    }
    var billing = JSON.parse(JSON.stringify(data.billing_details || {}));
    if (card.inputs.postal) {
      billing.address = billing.address || {};
      if (!billing.address.postal_code) billing.address.postal_code = card.postalCode;
    }
    return api("POST", "/v1/payment_methods", {
      key: this.key, type: "card", billing_details: billing,
      card: { number: c.number, exp_month: c.month, exp_year: c.year, cvc: c.cvc }
    }).then(function (res) {
      return res.ok ? { paymentMethod: res.body } : { error: res.body.error || { message: "Request failed" } };
    });
  };

  Stripe.prototype._intent = function (id, secret) {
    return api("GET", "/v1/payment_intents/" + id, { key: this.key, client_secret: secret });
  };

  Stripe.prototype.confirmCardPayment = function (clientSecret) {
    var self = this;
    var id = String(clientSecret).split("_secret_")[0];
    function outcome(pi) {
      if (["succeeded", "processing", "requires_capture"].indexOf(pi.status) >= 0) return { paymentIntent: pi };
      var err = pi.last_payment_error || {};
      return { error: { type: "card_error", code: err.code, message: err.message || "Your card was declined.", payment_intent: pi } };
    }
    return self._intent(id, clientSecret).then(function (res) {
      if (!res.ok) return { error: res.body.error || { message: "Request failed" } };
      var pi = res.body;
      if (pi.status === "requires_confirmation") {
        return api("POST", "/v1/payment_intents/" + id + "/confirm", { key: self.key, client_secret: clientSecret })
          .then(function () { return self._intent(id, clientSecret); })
          .then(function (r) { return self._afterConfirm(r.body, clientSecret).then(outcome); });
      }
      return self._afterConfirm(pi, clientSecret).then(outcome);
    });
  };

  Stripe.prototype._afterConfirm = function (pi, secret) {
    var self = this;
    if (pi.status !== "requires_action") return Promise.resolve(pi);
    return new Promise(function (resolve) {
      var overlay = document.createElement("div");
      overlay.style.position = "fixed";
      overlay.style.inset = "0";
      overlay.style.background = "rgba(0,0,0,0.45)";
      overlay.style.display = "flex";
      overlay.style.alignItems = "center";
      overlay.style.justifyContent = "center";
      overlay.style.zIndex = "2147483647";
      var frame = document.createElement("iframe");
      frame.name = "stripe-double-3ds";
      frame.title = "3-D Secure authentication";
      frame.src = ORIGIN + "/v3/3ds?" + new URLSearchParams({ pi: pi.id, secret: secret, key: self.key });
      frame.style.width = "min(420px, 92vw)";
      frame.style.height = "260px";
      frame.style.border = "0";
      frame.style.background = "#fff";
      overlay.appendChild(frame);
      document.body.appendChild(overlay);
      function done(event) {
        if (event.origin !== ORIGIN || !event.data || event.data.type !== "stripe-double-3ds-done") return;
        window.removeEventListener("message", done);
        overlay.remove();
        self._intent(pi.id, secret).then(function (r) { resolve(r.body); });
      }
      window.addEventListener("message", done);
    });
  };

  window.Stripe = Stripe;
})();
