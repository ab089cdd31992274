// Carries an uploaded or drawn image from the classify page to the attack explorer
// ("Attack this image"): one blob in the browser's IndexedDB, taken (and deleted)
// by the explorer. IndexedDB holds blobs of any size, unlike sessionStorage.
"use strict";

(function () {
  const DB = "gibbon", STORE = "handoff", KEY = "image";

  function open() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error || new Error("the browser's storage is not available"));
    });
  }

  function tx(mode, fn) {
    return open().then((db) => new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const out = fn(t.objectStore(STORE));
      t.oncomplete = () => {
        db.close();
        resolve(out.result);
      };
      t.onerror = t.onabort = () => {
        db.close();
        reject(t.error || new Error("the browser's storage refused the image"));
      };
    }));
  }

  // put keeps {blob, name, kind} for the explorer.
  function put(item) {
    return tx("readwrite", (s) => s.put(item, KEY));
  }

  // take returns the kept item (or undefined) and deletes it.
  async function take() {
    const item = await tx("readonly", (s) => s.get(KEY));
    await tx("readwrite", (s) => s.delete(KEY));
    return item;
  }

  window.GibbonHandoff = { put, take };
})();
