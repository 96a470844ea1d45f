/* The care console's service worker (cloud_bridge/console_pwa.py).
 * It shows the pushes the hub sends (cloud_bridge/notify/webpush.py `payload`: title, body,
 * alert_id, severity, url = the one-click acknowledgement link) and opens the link when the
 * notification is tapped; a push saying the alert is `closed` (taken, resolved, cancelled)
 * replaces the alert's notification, quietly. It caches one page only, the "console
 * unreachable" page: never an alert, so a phone offline never shows stale alerts as current. */
'use strict';

var CACHE = 'veille-offline-1';
var OFFLINE_URL = '/hors-ligne';
var ICON = '/icons/icon-192.png';

self.addEventListener('install', function (event) {
  event.waitUntil(
    caches.open(CACHE)
      .then(function (cache) { return cache.add(new Request(OFFLINE_URL, {cache: 'reload'})); })
      .then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener('activate', function (event) {
  event.waitUntil(
    caches.keys()
      .then(function (keys) {
        return Promise.all(keys.filter(function (k) { return k !== CACHE; })
          .map(function (k) { return caches.delete(k); }));
      })
      .then(function () { return self.clients.claim(); })
  );
});

self.addEventListener('fetch', function (event) {
  // pages come from the network, always; only when it cannot be reached, the offline page.
  // Forms (POST) and everything else go to the network as without a worker.
  if (event.request.mode !== 'navigate' || event.request.method !== 'GET') return;
  event.respondWith(
    fetch(event.request).catch(function () {
      return caches.match(OFFLINE_URL).then(function (page) {
        return page || new Response('Console injoignable / Console unreachable', {
          status: 503, headers: {'Content-Type': 'text/plain; charset=utf-8'}
        });
      });
    })
  );
});

function linkOf(url) {
  // the acknowledgement link, or the console's inbox: never anything but http(s)
  try {
    var parsed = new URL(url, self.location.origin);
    if (parsed.protocol === 'https:' || parsed.protocol === 'http:') return parsed.href;
  } catch (e) { /* not a URL */ }
  return new URL('/', self.location.origin).href;
}

function notice(data) {
  // `closed`: the alert was taken or is over; its notification is replaced, quietly
  var open = !data.closed;
  var urgent = open && (data.severity === 'critical' || data.severity === 'high');
  return {
    title: data.title || 'Veille : alerte',
    options: {
      body: data.body || '',
      lang: 'fr',
      icon: ICON,
      badge: ICON,
      tag: data.alert_id || '',  // a reminder replaces the alert's earlier notification
      renotify: open && Boolean(data.alert_id),
      silent: !open,
      requireInteraction: urgent,  // stays until someone acts on it
      data: {url: linkOf(data.url || '/'), alert_id: data.alert_id || ''}
    }
  };
}

self.addEventListener('push', function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (e) {
    data = {body: event.data ? event.data.text() : ''};
  }
  var shown = notice(data);
  event.waitUntil(self.registration.showNotification(shown.title, shown.options));
});

self.addEventListener('notificationclick', function (event) {
  event.notification.close();
  var url = linkOf(event.notification.data && event.notification.data.url);
  event.waitUntil(self.clients.openWindow(url));
});
