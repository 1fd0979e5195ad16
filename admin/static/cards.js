// Adding a saved card on a contact's page (operators): "Enter a card" loads Stripe.js and mounts Stripe
// Elements' card field, the same Stripe.js
// (public API only: Stripe(), elements().create("card"), createPaymentMethod) and postcode rule as the
// donation form (the card field asks for the postcode; one paydesk knows is filled in). The browser makes
// the PaymentMethod with the publishable key; the form then posts its id, and paydesk attaches it.
(function () {
  "use strict";

  function setError(form, text) {
    var line = form.querySelector('[data-error-for="card"]');
    if (line) line.textContent = text || "";
  }

  function init(form) {
    if (form.dataset.ready) return;
    form.dataset.ready = "1";
    var button = form.querySelector("button[type=submit]");
    var target = form.querySelector(".card-element");
    if (typeof window.Stripe !== "function" || !form.dataset.publishableKey || !target) {
      setError(form, "The card field could not be loaded. Reload the page to add a card.");
      if (button) button.disabled = true;
      return;
    }
    var stripe = window.Stripe(form.dataset.publishableKey);
    var card = stripe.elements().create("card", { hidePostalCode: false });
    card.mount("#" + target.id);
    if (form.dataset.knownPostcode) card.update({ value: { postalCode: form.dataset.knownPostcode } });
    card.on("change", function (event) { setError(form, event.error ? event.error.message : ""); });
    form.addEventListener("submit", function (evt) {
      var pm = form.querySelector('input[name="payment_method"]');
      if (pm.value) return;  // made already: post it
      evt.preventDefault();
      button.disabled = true;
      stripe.createPaymentMethod({ type: "card", card: card }).then(function (result) {
        if (result.error) {
          setError(form, result.error.message);
          button.disabled = false;
          return;
        }
        pm.value = result.paymentMethod.id;
        form.submit();
      });
    });
  }

  // Stripe.js is loaded only when staff open a card field (the page's CSP allows its origin), so a contact's
  // page asks nothing of Stripe's servers until a card is to be added.
  var loading = null;
  function loadStripe(url) {
    if (typeof window.Stripe === "function") return Promise.resolve();
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = url;
        script.onload = resolve;
        script.onerror = function () { loading = null; reject(); };
        document.head.appendChild(script);
      });
    }
    return loading;
  }

  document.addEventListener("click", function (evt) {
    var opener = evt.target && evt.target.closest && evt.target.closest("[data-open-card]");
    if (!opener) return;
    var form = opener.closest("form.add-card");
    opener.disabled = true;
    loadStripe(form.dataset.stripeJs).then(function () {
      opener.hidden = true;
      form.querySelector(".card-element").hidden = false;
      form.querySelector("button[type=submit]").hidden = false;
      init(form);
      var first = form.querySelector(".card-element input");
      if (first) first.focus();
    }, function () {
      opener.disabled = false;
      setError(form, "The card field could not be loaded. Check the connection and try again.");
    });
  });
})();
