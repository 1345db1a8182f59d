// latchkey's passkey buttons: the WebAuthn ceremonies the pages need, as a
// static file (the Content-Security-Policy allows no inline script). Every
// page works without it; it only shows the passkey buttons where the browser
// has WebAuthn.
//
// A button names the route that gives it a challenge
// (`data-passkey-options`) and the form that carries the answer
// (`data-passkey-form`, whose hidden `credential` field gets the
// authenticator's answer as JSON before the form is submitted as usual, its
// CSRF token included). `data-passkey-create` marks a registration.
(function () {
  "use strict";

  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function toBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
  }

  function creationOptions(publicKey) {
    return Object.assign({}, publicKey, {
      challenge: toBytes(publicKey.challenge),
      user: Object.assign({}, publicKey.user, { id: toBytes(publicKey.user.id) }),
      excludeCredentials: withIds(publicKey.excludeCredentials),
    });
  }

  function requestOptions(publicKey) {
    return Object.assign({}, publicKey, {
      challenge: toBytes(publicKey.challenge),
      allowCredentials: withIds(publicKey.allowCredentials),
    });
  }

  function registration(credential) {
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        attestationObject: toBase64url(credential.response.attestationObject),
        clientDataJSON: toBase64url(credential.response.clientDataJSON),
        transports: credential.response.getTransports ? credential.response.getTransports() : undefined,
      },
    };
  }

  function assertion(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      extensions: credential.getClientExtensionResults(),
      response: {
        authenticatorData: toBase64url(response.authenticatorData),
        clientDataJSON: toBase64url(response.clientDataJSON),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
      },
    };
  }

  function say(button, message) {
    var id = button.getAttribute("aria-describedby");
    var place = id && document.getElementById(id);
    if (place) {
      place.textContent = message;
      place.hidden = false;
    }
  }

  async function ceremony(button) {
    var form = document.getElementById(button.dataset.passkeyForm);
    var creating = button.hasAttribute("data-passkey-create");
    var answer = await fetch(button.dataset.passkeyOptions, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: "{}",
    });
    // An answer that is not JSON (a proxy's error page) still gets the
    // plain message below, not the parser's.
    var options = await answer.json().catch(function () {
      return {};
    });
    if (!answer.ok) {
      if (options.reauth) {
        window.location.assign("/account/confirm?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      throw new Error(options.message || "The server refused the request.");
    }
    var credential = creating
      ? await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
      : await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    form.elements.credential.value = JSON.stringify(
      creating ? registration(credential) : assertion(credential)
    );
    // The login page's "Remember me" counts for a passkey sign-in too.
    var remember = document.getElementById("remember");
    if (form.elements.remember && remember) {
      form.elements.remember.value = remember.checked ? "on" : "";
    }
    form.submit();
  }

  // What only works with this script is hidden until it runs.
  document.querySelectorAll("[data-passkey-hidden]").forEach(function (part) {
    part.hidden = false;
  });

  document.querySelectorAll("[data-passkey-options]").forEach(function (button) {
    var form = document.getElementById(button.dataset.passkeyForm);
    button.hidden = false;
    // Enter in the form's field starts the ceremony, as the button does.
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!button.disabled) {
        button.click();
      }
    });
    button.addEventListener("click", function () {
      button.disabled = true;
      ceremony(button).catch(function (error) {
        button.disabled = false;
        say(button, error && error.name === "NotAllowedError"
          ? "The passkey request was cancelled or timed out."
          : (error && error.message) || "The passkey request failed.");
      });
    });
  });
})();
