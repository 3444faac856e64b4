// usher passkeys: turns the server's WebAuthn options (JSON, base64url) into the browser's
// calls, and the browser's answer back into JSON in the form's "response" field.
(function () {
  'use strict';
  function toBuf(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function toB64u(buf) {
    var bytes = new Uint8Array(buf);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function options(form) {
    return JSON.parse(form.querySelector('[name=options]').value).publicKey;
  }
  function extensions(cred) {
    return cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
  }
  async function signIn(form) {
    var o = options(form);
    o.challenge = toBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    var cred = await navigator.credentials.get({ publicKey: o });
    var r = cred.response;
    return {
      id: cred.id, rawId: toB64u(cred.rawId), type: cred.type,
      response: {
        authenticatorData: toB64u(r.authenticatorData),
        clientDataJSON: toB64u(r.clientDataJSON),
        signature: toB64u(r.signature),
        userHandle: r.userHandle ? toB64u(r.userHandle) : null
      },
      extensions: extensions(cred)
    };
  }
  async function register(form) {
    var o = options(form);
    o.challenge = toBuf(o.challenge);
    o.user.id = toBuf(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    var cred = await navigator.credentials.create({ publicKey: o });
    var r = cred.response;
    return {
      id: cred.id, rawId: toB64u(cred.rawId), type: cred.type,
      response: {
        attestationObject: toB64u(r.attestationObject),
        clientDataJSON: toB64u(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      },
      extensions: extensions(cred)
    };
  }
  document.querySelectorAll('form[data-passkey]').forEach(function (form) {
    form.addEventListener('submit', async function (ev) {
      if (form.dataset.sent) { return; }
      ev.preventDefault();
      var shown = document.getElementById('passkey-error');
      try {
        var answer = form.dataset.passkey === 'create' ? await register(form) : await signIn(form);
        form.querySelector('[name=response]').value = JSON.stringify(answer);
        form.dataset.sent = '1';
        form.submit();
      } catch (e) {
        if (shown) { shown.textContent = 'The passkey did not work: ' + e.message; shown.hidden = false; }
      }
    });
  });
})();
