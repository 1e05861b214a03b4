/*
 * PSP sandbox drop-in (a stand-in for the PSP's card component; development and tests only).
 *
 *   <script src="http://127.0.0.1:8090/sandbox/dropin.js"></script>
 *   <div id="card"></div>
 *   <script>
 *     PspSandboxDropin.mount(document.getElementById("card"), {
 *       onSubmit: (paymentMethod) => fetch("/v1/shop/payments", {...})  // tokens only
 *     });
 *   </script>
 *
 * The card fields live in this component only. On submit it posts them to the sandbox's
 * /sandbox/tokenize and hands the page an Adyen-shaped `paymentMethod` whose encrypted*
 * fields are `sbx_tok_...` tokens: the page, and checkout behind it, never see a card number.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = script ? new URL(script.src).origin : window.location.origin;

  function field(name, label, placeholder, autocomplete) {
    var wrap = document.createElement("label");
    wrap.style.display = "block";
    wrap.textContent = label + " ";
    var input = document.createElement("input");
    input.name = name;
    input.placeholder = placeholder;
    input.autocomplete = autocomplete;
    input.inputMode = "numeric";
    wrap.appendChild(input);
    return { wrap: wrap, input: input };
  }

  function mount(container, options) {
    options = options || {};
    var form = document.createElement("form");
    var number = field("number", "Card number", "4242 4242 4242 4242", "cc-number");
    var expiry = field("expiry", "Expiry (MM/YY)", "03/30", "cc-exp");
    var cvc = field("cvc", "CVC", "737", "cc-csc");
    var button = document.createElement("button");
    button.type = "submit";
    button.textContent = options.buttonLabel || "Pay";
    var status = document.createElement("p");
    [number.wrap, expiry.wrap, cvc.wrap, button, status].forEach(function (el) {
      form.appendChild(el);
    });
    container.appendChild(form);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var parts = expiry.input.value.split("/");
      var year = (parts[1] || "").trim();
      var body = {
        number: number.input.value.replace(/\s+/g, ""),
        expiry_month: (parts[0] || "").trim(),
        expiry_year: year.length === 2 ? "20" + year : year,
        cvc: cvc.input.value.trim() || null
      };
      button.disabled = true;
      status.textContent = "";
      fetch(origin + "/sandbox/tokenize", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body)
      })
        .then(function (response) {
          if (!response.ok) { throw new Error("tokenisation failed: " + response.status); }
          return response.json();
        })
        .then(function (tokens) {
          number.input.value = "";
          cvc.input.value = "";
          var paymentMethod = {
            type: "scheme",
            brand: tokens.brand,
            encryptedCardNumber: tokens.encryptedCardNumber,
            encryptedExpiryMonth: tokens.encryptedExpiryMonth,
            encryptedExpiryYear: tokens.encryptedExpiryYear
          };
          if (tokens.encryptedSecurityCode) {
            paymentMethod.encryptedSecurityCode = tokens.encryptedSecurityCode;
          }
          return options.onSubmit ? options.onSubmit(paymentMethod) : paymentMethod;
        })
        .catch(function (error) {
          status.textContent = String(error.message || error);
          if (options.onError) { options.onError(error); }
        })
        .finally(function () { button.disabled = false; });
    });
    return { form: form };
  }

  /* Open the sandbox's 3DS2 challenge page for a `threeDS2` action and resolve with the
     `details` to send to /payments/details (through checkout's PAY-102). */
  function handleAction(action) {
    return new Promise(function (resolve, reject) {
      if (!action || action.type !== "threeDS2" || !action.url) {
        reject(new Error("unsupported action"));
        return;
      }
      var popup = window.open(action.url, "psp-sandbox-3ds", "width=480,height=520");
      function listener(event) {
        if (event.origin !== origin || !event.data || event.data.type !== "psp-sandbox-3ds") {
          return;
        }
        window.removeEventListener("message", listener);
        if (popup) { popup.close(); }
        resolve(event.data.details);
      }
      window.addEventListener("message", listener);
    });
  }

  window.PspSandboxDropin = { mount: mount, handleAction: handleAction, origin: origin };
})();
