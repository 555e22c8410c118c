/*
 * tsunagu web push service worker.
 *
 * A service worker must come from the site's own origin, so the site serves a one-line worker that loads
 * this one:   importScripts("https://<tsunagu host>/static/messaging/sw.js");
 *
 * A push from tsunagu carries JSON: {"title", "body", "url", "icon", "key"}. The notification is tagged
 * with the delivery key, so a message that reaches the browser twice is shown once; a click opens `url`
 * (or focuses a tab already showing it).
 */
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  if (event.data) {
    try {
      data = event.data.json();
    } catch (_) {
      data = { body: event.data.text() };
    }
  }
  const options = {
    body: data.body || "",
    data: { url: data.url || "" },
  };
  if (data.icon) options.icon = data.icon;
  if (data.key) options.tag = data.key;
  event.waitUntil(self.registration.showNotification(data.title || "", options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  if (!url) return;
  const target = new URL(url, self.location.origin);
  if (target.protocol !== "https:" && target.protocol !== "http:") return;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (client.url === target.href && "focus" in client) return client.focus();
      }
      return self.clients.openWindow(target.href);
    })()
  );
});
