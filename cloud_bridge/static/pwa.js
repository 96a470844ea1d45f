/* Every console page: register the service worker (/sw.js, scope /). On /notifications:
 * subscribe this browser to web push with the hub's VAPID key and post the subscription to
 * the console (CSRF token in X-CSRF-Token), or unsubscribe (cloud_bridge/console_pwa.py). */
(function () {
  'use strict';
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js', {scope: '/'}).catch(function (e) {
      console.warn('veille: service worker not registered', e);
    });
  }

  var box = document.getElementById('push');
  if (!box || box.dataset.state === 'not-set-up') return;
  var on = document.getElementById('push-on');
  var off = document.getElementById('push-off');
  var csrf = box.dataset.csrf;

  function show(state) {
    box.dataset.state = state;
    box.querySelectorAll('[data-when]').forEach(function (el) { el.hidden = el.dataset.when !== state; });
    on.hidden = !(state === 'off' || state === 'error');
    off.hidden = state !== 'on';
  }

  function bytes(b64url) {
    var s = b64url.replace(/-/g, '+').replace(/_/g, '/');
    var raw = atob(s + '==='.slice((s.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function same(buffer, key) {
    if (!buffer) return false;
    var a = new Uint8Array(buffer);
    if (a.length !== key.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== key[i]) return false;
    return true;
  }

  function post(path, body) {
    return fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 401) location.href = '/login?next=' + encodeURIComponent(location.pathname);
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r;
    });
  }

  function hubKey() {
    return fetch('/api/push/key', {credentials: 'same-origin', cache: 'no-store'})
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (j) { return bytes(j.key); });
  }

  // workers and push exist only on https:// (or this machine): say so rather than wait
  if (!window.isSecureContext) { show('insecure'); return; }
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
    show('unsupported');
    return;
  }

  function subscribe() {
    show('busy');
    Notification.requestPermission().then(function (permission) {
      if (permission !== 'granted') { show('denied'); return null; }
      return Promise.all([navigator.serviceWorker.ready, hubKey()]).then(function (got) {
        var reg = got[0], key = got[1];
        return reg.pushManager.getSubscription().then(function (old) {
          // a subscription made for another key (the hub's key changed) cannot be reused
          if (old && !same(old.options.applicationServerKey, key)) return old.unsubscribe();
          return null;
        }).then(function () {
          return reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
        });
      }).then(function (sub) {
        return post('/api/push/subscribe', sub.toJSON());
      }).then(function () { location.reload(); });
    }).catch(function (e) { console.warn('veille: push subscription failed', e); show('error'); });
  }

  function unsubscribe() {
    show('busy');
    navigator.serviceWorker.ready.then(function (reg) {
      return reg.pushManager.getSubscription();
    }).then(function (sub) {
      if (!sub) return null;
      return post('/api/push/unsubscribe', {endpoint: sub.endpoint}).then(function () {
        return sub.unsubscribe();
      });
    }).then(function () { location.reload(); })
      .catch(function (e) { console.warn('veille: unsubscribe failed', e); show('error'); });
  }

  on.addEventListener('click', subscribe);
  off.addEventListener('click', unsubscribe);
  if (Notification.permission === 'denied') { show('denied'); return; }
  navigator.serviceWorker.ready.then(function (reg) {
    return reg.pushManager.getSubscription();
  }).then(function (sub) {
    // on only if the hub keeps this browser's subscription for the signed-in staff member
    // (it forgets one the push service calls gone, or one removed from the list below)
    var mine = Array.prototype.map.call(
      document.querySelectorAll('#push-devices [data-endpoint]'),
      function (el) { return el.dataset.endpoint; });
    show(sub && mine.indexOf(sub.endpoint) >= 0 ? 'on' : 'off');
  }).catch(function () { show('off'); });
})();
