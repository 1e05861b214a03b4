/* The demo storefront's glue around the PSP's drop-in: the drop-in tokenises the card in its
   own component and hands over tokens; this posts them to our server (PAY-101), runs the
   3-D Secure challenge when asked (PAY-102), then shows the result page. */
(function () {
  "use strict";
  var root = document.getElementById("dropin");
  var status = document.getElementById("pay-status");
  if (!root || !window.PspSandboxDropin) {
    if (status) { status.textContent = "The payment component could not be loaded."; }
    return;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, body: json }; });
    });
  }

  function browserInfo() {
    return {
      userAgent: navigator.userAgent,
      acceptHeader: "text/html",
      language: navigator.language,
      colorDepth: screen.colorDepth,
      screenHeight: screen.height,
      screenWidth: screen.width,
      timeZoneOffset: new Date().getTimezoneOffset(),
      javaEnabled: false
    };
  }

  function handle(result) {
    if (!result.ok) {
      var error = result.body.error || {};
      throw new Error(error.message || "the payment could not be sent");
    }
    if (result.body.action) {
      status.textContent = "Confirm the payment with your bank in the window that opened.";
      return window.PspSandboxDropin.handleAction(result.body.action).then(function (details) {
        status.textContent = "Checking with your bank…";
        return post(root.dataset.detailsUrl, {
          details: details,
          idempotency_key: root.dataset.detailsKey
        }).then(handle);
      });
    }
    window.location.assign(result.body.next);
    return null;
  }

  window.PspSandboxDropin.mount(root, {
    buttonLabel: root.dataset.label,
    onSubmit: function (paymentMethod) {
      status.textContent = "Sending…";
      return post(root.dataset.payUrl, {
        payment_method: paymentMethod,
        browser_info: browserInfo(),
        idempotency_key: root.dataset.payKey
      }).then(handle).catch(function (error) {
        status.textContent = String(error.message || error);
      });
    }
  });
})();
