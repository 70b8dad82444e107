// Passkeys: registering one and using one. The page names the URLs in data attributes
// (data-options-url, data-verify-url, data-csrf, data-purpose, data-next) on a form marked
// data-webauthn="register" or "authenticate"; the server checks everything.
(function () {
  "use strict";

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(form, url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.dataset.csrf },
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          if (data.redirect) window.location.assign(data.redirect);
          throw new Error(data.error || response.statusText);
        }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: toBytes(c.id), transports: c.transports };
    });
  }

  function register(form) {
    return post(form, form.dataset.optionsUrl).then(function (options) {
      options.challenge = toBytes(options.challenge);
      options.user.id = toBytes(options.user.id);
      options.excludeCredentials = descriptors(options.excludeCredentials);
      return navigator.credentials.create({ publicKey: options });
    }).then(function (credential) {
      var response = credential.response;
      return post(form, form.dataset.verifyUrl, {
        name: (form.elements.name && form.elements.name.value) || "",
        credential: {
          id: credential.id,
          rawId: toB64url(credential.rawId),
          type: credential.type,
          response: {
            clientDataJSON: toB64url(response.clientDataJSON),
            attestationObject: toB64url(response.attestationObject),
            transports: response.getTransports ? response.getTransports() : [],
          },
          clientExtensionResults: credential.getClientExtensionResults(),
        },
      });
    });
  }

  function authenticate(form) {
    return post(form, form.dataset.optionsUrl).then(function (options) {
      options.challenge = toBytes(options.challenge);
      options.allowCredentials = descriptors(options.allowCredentials);
      return navigator.credentials.get({ publicKey: options });
    }).then(function (credential) {
      var response = credential.response;
      return post(form, form.dataset.verifyUrl, {
        purpose: form.dataset.purpose,
        next: form.dataset.next,
        credential: {
          id: credential.id,
          rawId: toB64url(credential.rawId),
          type: credential.type,
          response: {
            clientDataJSON: toB64url(response.clientDataJSON),
            authenticatorData: toB64url(response.authenticatorData),
            signature: toB64url(response.signature),
            userHandle: response.userHandle ? toB64url(response.userHandle) : null,
          },
          clientExtensionResults: credential.getClientExtensionResults(),
        },
      });
    });
  }

  function bind(form) {
    var error = form.querySelector(".webauthn-error");
    var action = form.dataset.webauthn === "register" ? register : authenticate;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (error) error.hidden = true;
      if (!window.PublicKeyCredential) {
        if (error) {
          error.textContent = form.dataset.unavailable;
          error.hidden = false;
        }
        return;
      }
      action(form).then(function (data) {
        window.location.assign(data.redirect);
      }).catch(function (exc) {
        if (error) {
          error.textContent = exc.message;
          error.hidden = false;
        }
      });
    });
  }

  document.querySelectorAll("form[data-webauthn]").forEach(bind);
})();
