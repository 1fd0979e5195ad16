// paydesk donation form. The page works as plain HTML; JavaScript is here only for the card
// (Stripe.js, public API only: Stripe(), elements().create("card"), createPaymentMethod,
// confirmCardPayment) and for the thank-you page to notice when the payment is confirmed.
(function () {
  "use strict";

  // -- The billing-postcode rules: the only place that decides them. ---------------------
  // The card element always shows its own postcode input, and its value is the master: it
  // reaches Stripe in the PaymentMethod (Stripe.js adds it) and the contact's address (sent
  // as postal_code). A postcode we already know (signed donor link, staff taking a gift) is
  // copied into the element and the form's own field is shown disabled, following the
  // element; an unknown one: the form's field is hidden and follows the element. A form
  // without a billing-address section has no field of its own at all.
  function postcodePlan(formHasField, knownPostcode) {
    if (!formHasField) return { field: "absent", element: knownPostcode };
    if (knownPostcode) return { field: "disabled", element: knownPostcode };
    return { field: "hidden", element: "" };
  }

  function applyPostcodePlan(form, card) {
    var plan = postcodePlan(form.dataset.hasPostcodeField === "on", form.dataset.knownPostcode || "");
    var wrapper = form.querySelector("[data-postcode-wrapper]");
    var input = wrapper && wrapper.querySelector("input");
    var state = { value: plan.element, plan: plan.field };
    if (plan.element) card.update({ value: { postalCode: plan.element } });
    if (input && plan.field === "hidden") wrapper.hidden = true;
    if (input && plan.field === "disabled") {
      input.value = plan.element;
      input.disabled = true;
    }
    card.on("change", function (event) {
      if (event.value && typeof event.value.postalCode === "string") {
        state.value = event.value.postalCode;
        if (input) input.value = state.value;
      }
    });
    return state;
  }

  // -- helpers ------------------------------------------------------------------------------
  function byId(id) { return document.getElementById(id); }

  function say(text) {
    var box = byId("donate-status");
    if (box) box.textContent = text || "";
  }

  function showFormError(text) {
    var box = byId("form-error");
    box.textContent = text || "";
    box.hidden = !text;
    if (text) box.focus();
  }

  function setFieldError(form, name, text) {
    var line = form.querySelector('[data-error-for="' + name + '"]');
    if (line) line.textContent = text || "";
    if (name === "card") {
      byId("card-element").classList.toggle("has-error", !!text);
      return;
    }
    var inputs = form.querySelectorAll('[name="' + name + '"]');
    Array.prototype.forEach.call(inputs, function (input) {
      if (input.type !== "radio") {
        if (text) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      }
    });
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (line) {
      setFieldError(form, line.getAttribute("data-error-for"), "");
    });
    showFormError("");
  }

  function fields(form) {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "submit") return;
      if ((el.type === "radio" || el.type === "checkbox") && !el.checked) return;
      data[el.name] = el.value;
    });
    return data;
  }

  function billingDetails(data) {
    var details = { name: ((data.first_name || "") + " " + (data.last_name || "")).trim() };
    if (data.email) details.email = data.email;
    var address = {};
    if (data.address_line1) address.line1 = data.address_line1;
    if (data.city) address.city = data.city;
    if (address.line1 || address.city) details.address = address;  // the postcode: from the card element
    return details;
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().catch(function () {
        return { status: "error", error: "Something went wrong on our side. Please try again." };
      });
    });
  }

  // -- the form -----------------------------------------------------------------------------
  function initForm(form) {
    var button = form.querySelector(".donate-button");
    if (typeof window.Stripe !== "function" || !form.dataset.publishableKey) {
      showFormError("The card field could not be loaded. Please reload the page to give.");
      button.disabled = true;
      return;
    }
    var stripe = window.Stripe(form.dataset.publishableKey);
    var card = stripe.elements().create("card", {
      hidePostalCode: false,
      style: { base: { fontSize: "16px", color: "#1b2230" } }
    });
    card.mount("#card-element");
    var postcode = applyPostcodePlan(form, card);
    var cardError = null;
    card.on("change", function (event) {
      cardError = event.error ? event.error.message : null;
      setFieldError(form, "card", cardError || "");
    });

    var busy = false;
    function setBusy(on, text) {
      busy = on;
      button.disabled = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
      say(text || "");
    }

    function finish(body) {
      if (body.token) form.dataset.token = body.token;
      if (body.status === "succeeded" && body.redirect) {
        say("Thank you! Taking you to the confirmation page…");
        window.location.assign(body.redirect);
        return null;
      }
      if (body.status === "requires_action" && body.client_secret) {
        say("Your bank asks you to confirm this payment…");
        return stripe.confirmCardPayment(body.client_secret).then(function () {
          say("Checking the payment…");
          return postJSON(body.result_url, {}).then(finish);  // the server asks Stripe how it ended
        });
      }
      if (body.status === "unconfirmed") {  // Stripe may have taken the gift: no second try from this page
        setBusy(false, "");
        button.disabled = true;
        showFormError(body.error);
        return null;
      }
      var errors = body.errors || {};
      Object.keys(errors).forEach(function (name) { setFieldError(form, name, errors[name]); });
      setBusy(false, "");
      showFormError(body.error || "The payment did not go through. Please try again.");
      return null;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      clearErrors(form);
      setBusy(true, "Processing your gift…");
      var data = fields(form);
      stripe.createPaymentMethod({ type: "card", card: card, billing_details: billingDetails(data) })
        .then(function (result) {
          data.payment_method = result.error ? "" : result.paymentMethod.id;
          data.postal_code = postcode.value || data.postal_code || "";
          data.token = form.dataset.token;
          return postJSON(form.dataset.payUrl, data).then(function (body) {
            if (result.error && body.errors && body.errors.card) body.errors.card = result.error.message;
            return finish(body);
          });
        })
        .catch(function () {
          setBusy(false, "");
          showFormError("We could not reach the server. Check your connection and try again.");
        });
    });
  }

  // -- the thank-you page: wait for the webhook to complete the gift -------------------------
  function initThanks(box) {
    if (box.dataset.state !== "waiting") return;
    var tries = 0;
    function poll() {
      tries += 1;
      fetch(box.dataset.statusUrl, { headers: { "Accept": "application/json" }, cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (state) {
          if (state.state !== "waiting") window.location.reload();
          else later();
        })
        .catch(later);
    }
    function later() {
      if (tries < 120) {
        window.setTimeout(poll, 1500);
      } else {
        var note = document.createElement("p");
        note.textContent = "This is taking longer than usual. You will get an email once it is confirmed.";
        box.appendChild(note);
      }
    }
    window.setTimeout(poll, 1000);
  }

  function start() {
    var form = byId("donate-form");
    if (form) initForm(form);
    var thanks = byId("thanks-state");
    if (thanks) initThanks(thanks);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
