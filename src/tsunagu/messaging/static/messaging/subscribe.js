/*
 * tsunagu web push subscribe snippet. No dependencies.
 *
 *   <script src="https://<tsunagu host>/static/messaging/subscribe.js"
 *           data-vapid-public-key="B..."                        (the channel's vapid_public_key)
 *           data-subscribe-url="https://<tsunagu host>/m/push/<workspace token>/subscribe"
 *           data-service-worker="/tsunagu-sw.js"                (on the site's origin; default /tsunagu-sw.js)
 *           data-user-id="..."></script>                        (optional; else the analytics.js anonymous id)
 *   <button data-tsunagu-push>Notify me</button>
 *
 * Browsers ask for permission only from a click, so clicking an element with `data-tsunagu-push`
 * subscribes. Once permission is granted, every page load sends the current subscription again, which keeps
 * tsunagu's copy fresh when the browser rotates it. From code:
 *
 *   tsunaguPush.subscribe({ userId: "u_123" }).then((subscription) => ...);
 *   tsunaguPush.supported   // false where the browser has no Push API
 */
(function () {
  "use strict";

  const script = document.currentScript;
  const defaults = {
    vapidPublicKey: script ? script.dataset.vapidPublicKey : "",
    subscribeUrl: script ? script.dataset.subscribeUrl : "",
    serviceWorker: (script && script.dataset.serviceWorker) || "/tsunagu-sw.js",
    userId: script ? script.dataset.userId : "",
    anonymousId: script ? script.dataset.anonymousId : "",
  };
  const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;

  function keyBytes(base64url) {
    const base64 = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function sameKey(subscription, key) {
    const current = subscription.options && subscription.options.applicationServerKey;
    if (!current) return true;
    const a = new Uint8Array(current);
    return a.length === key.length && a.every((byte, i) => byte === key[i]);
  }

  function anonymousId() {
    // Segment's analytics.js (and RudderStack's) keep the visitor's anonymous id; tsunagu resolves it.
    try {
      if (window.analytics && typeof window.analytics.user === "function") return window.analytics.user().anonymousId();
      const stored = localStorage.getItem("ajs_anonymous_id");
      return stored ? JSON.parse(stored) : "";
    } catch (_) {
      return "";
    }
  }

  async function subscribe(options) {
    const o = Object.assign({}, defaults, options || {});
    if (!supported) throw new Error("this browser does not support web push");
    if (!o.vapidPublicKey || !o.subscribeUrl) throw new Error("tsunaguPush: vapidPublicKey and subscribeUrl are required");
    if ((await Notification.requestPermission()) !== "granted") return null;
    const registration = await navigator.serviceWorker.register(o.serviceWorker);
    await navigator.serviceWorker.ready;
    const key = keyBytes(o.vapidPublicKey);
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription, key)) {
      await subscription.unsubscribe(); // the channel's key changed: the old subscription cannot be used
      subscription = null;
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    }
    const body = { subscription: subscription.toJSON() };
    const userId = o.userId || "";
    if (userId) body.user_id = userId;
    else body.anonymous_id = o.anonymousId || anonymousId();
    const response = await fetch(o.subscribeUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      keepalive: true,
    });
    if (!response.ok) throw new Error("tsunaguPush: subscribe answered " + response.status);
    return subscription;
  }

  window.tsunaguPush = { subscribe: subscribe, supported: supported };

  if (!supported) return;
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-tsunagu-push]");
    if (!button) return;
    event.preventDefault();
    subscribe().catch((error) => console.warn(error));
  });
  if (Notification.permission === "granted" && defaults.vapidPublicKey && defaults.subscribeUrl) {
    subscribe().catch((error) => console.warn(error));
  }
})();
