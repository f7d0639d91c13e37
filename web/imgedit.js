// comfyui-imgedit frontend extension.
//
// 1. Settings -> ImgEdit -> API keys: one entry per key-owning service. Each entry is a custom
//    element (password field + Save + Clear + status), NOT a plain text setting: a text setting's
//    value is stored in user/<user>/comfy.settings.json on every change. The key goes only to the
//    pack's server route (POST /imgedit/keys), which writes user/imgedit/keys.json; the field empties
//    itself after saving, and the route never sends a key back (GET answers only true/false). The
//    setting's own stored value is never touched, so comfy.settings.json holds nothing for it.
// 2. Settings -> ImgEdit -> Journal of paid calls: an on/off switch (also a custom element whose
//    truth lives on the server, in user/imgedit/settings.json, via POST /imgedit/journal) and a
//    status line (records, size, folder; IMGEDIT_JOURNAL=0 on the server overrides the switch).
// 3. Remote provider nodes (they spend the user's paid credits) get a warm colour, a "$ paid credits"
//    badge drawn just above the title bar and a title suffix.
// Both lists come from the server's table of services (GET /imgedit/keys -> services), never from
// a copy here.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const ROUTE = "/imgedit/keys";
const JOURNAL_ROUTE = "/imgedit/journal";
const JOURNAL_SETTING = "ImgEdit.Journal.Enabled";

// The table of services comes from the server (nodes/core/services.py via GET /imgedit/keys), so
// a new provider needs no change here. Fetched before the extension registers its settings.
async function loadServices() {
  try {
    const resp = await api.fetchApi(ROUTE, { cache: "no-store" });
    if (resp.ok) {
      const body = await resp.json();
      if (body && Array.isArray(body.services)) return body;
    }
  } catch (err) {
    /* reported below */
  }
  console.warn("comfyui-imgedit: GET /imgedit/keys failed; the API-key settings and paid-credit badges are off.");
  return { keys: null, services: [] };
}

const TABLE = await loadServices();

// one settings entry per key-owning service, labelled with every service that uses the key
const KEY_SERVICES = TABLE.services
  .filter((row) => row.key_owner === row.service)
  .map((owner) => {
    const sharers = TABLE.services.filter((row) => row.key_owner === owner.service && row !== owner);
    const names = [owner, ...sharers].map((row) => row.label);
    const last = names[names.length - 1];
    return {
      service: owner.service,
      id: `ImgEdit.Keys.${owner.label.replace(/[^A-Za-z0-9]/g, "")}`,
      label: `${names.join(" / ")}${last.endsWith("API") ? " key" : " API key"}`,
    };
  });

// remote node id -> service it bills
const PAID_NODES = Object.fromEntries(TABLE.services.map((row) => [row.node_id, row.label]));
const PAID_SUFFIX = " ($ paid credits)";
const PAID_COLOR = "#6b4a12";
const PAID_BGCOLOR = "#3b2a10";
const BADGE_TEXT = "$ paid credits";

let statusCache = TABLE.keys; // {service: bool}, refreshed on demand

async function fetchStatus() {
  try {
    const resp = await api.fetchApi(ROUTE, { cache: "no-store" });
    if (!resp.ok) return null;
    const body = await resp.json();
    statusCache = body && typeof body.keys === "object" ? body.keys : null;
  } catch (err) {
    statusCache = null;
  }
  return statusCache;
}

async function sendKey(service, key) {
  // key === "" clears. The body is tiny JSON; the answer never contains the key.
  const payload = key ? { service, key } : { service, clear: true };
  let resp;
  try {
    resp = await api.fetchApi(ROUTE, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
      cache: "no-store",
    });
  } catch (err) {
    return { ok: false, error: "could not reach the ComfyUI server." };
  }
  let body = {};
  try {
    body = await resp.json();
  } catch (err) {
    body = {};
  }
  if (!resp.ok) return { ok: false, error: body.error || `the server answered HTTP ${resp.status}.` };
  if (body.keys) statusCache = body.keys;
  return { ok: true, action: body.action, keys: body.keys };
}

function statusText(has) {
  if (has === true) return "A key is set on the server (never shown again).";
  if (has === false) return "No key set.";
  return "Key status unknown (is the pack's /imgedit/keys route loaded?).";
}

const ROW_CSS = "display:flex;gap:6px;align-items:center;";

// The frame of one custom setting (a key field or the journal switch) and its status line.
function settingBox(className) {
  const root = document.createElement("div");
  root.className = className;
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;width:430px;max-width:100%;";
  return root;
}

function statusLine(className) {
  const status = document.createElement("div");
  status.className = className;
  status.style.cssText = "font-size:12px;opacity:0.8;";
  return status;
}

// Custom setting renderer: (name, setter, value, attrs) -> HTMLElement. `setter` is deliberately
// never called, so the key never enters the settings store.
function keyField(entry) {
  return function render(_name, _setter, _value, _attrs) {
    const root = settingBox("imgedit-key-setting");
    root.dataset.service = entry.service;

    const row = document.createElement("div");
    row.style.cssText = ROW_CSS;

    const input = document.createElement("input");
    input.type = "password";
    input.autocomplete = "off";
    input.spellcheck = false;
    input.name = `imgedit-key-${entry.service}`;
    input.placeholder = "paste key";
    input.className = "p-inputtext p-component imgedit-key-input";
    input.style.cssText = "flex:1;min-width:180px;";
    input.setAttribute("aria-label", entry.label);

    const save = document.createElement("button");
    save.type = "button";
    save.textContent = "Save";
    save.className = "p-button p-component imgedit-key-save";
    save.style.cssText = "padding:4px 10px;";

    const clear = document.createElement("button");
    clear.type = "button";
    clear.textContent = "Clear";
    clear.className = "p-button p-component p-button-secondary imgedit-key-clear";
    clear.style.cssText = "padding:4px 10px;";

    const status = statusLine("imgedit-key-status");
    status.textContent = statusCache ? statusText(statusCache[entry.service]) : "Checking…";

    const run = async (key) => {
      save.disabled = clear.disabled = true;
      status.textContent = key ? "Saving…" : "Clearing…";
      const result = await sendKey(entry.service, key);
      input.value = ""; // the field empties itself whatever happened
      save.disabled = clear.disabled = false;
      if (!result.ok) {
        status.textContent = `Not saved: ${result.error}`;
        return;
      }
      const has = result.keys ? result.keys[entry.service] : undefined;
      status.textContent =
        result.action === "cleared"
          ? has
            ? "Stored key removed; a key from an environment variable still applies."
            : "Stored key removed. No key set."
          : "Saved on the server (user/imgedit/keys.json); the key is not shown again.";
    };

    save.addEventListener("click", () => {
      const key = input.value.trim();
      if (!key) {
        status.textContent = "Paste a key first (Clear removes the stored one).";
        return;
      }
      run(key);
    });
    clear.addEventListener("click", () => run(""));
    input.addEventListener("keydown", (event) => {
      event.stopPropagation(); // keep ComfyUI's shortcuts out of the field
      if (event.key === "Enter") save.click();
    });

    row.append(input, save, clear);
    root.append(row, status);
    if (!statusCache) {
      fetchStatus().then((keys) => {
        if (!input.isConnected && !root.isConnected) return;
        status.textContent = statusText(keys ? keys[entry.service] : undefined);
      });
    }
    return root;
  };
}

async function journalCall(options) {
  try {
    const resp = await api.fetchApi(JOURNAL_ROUTE, { cache: "no-store", ...options });
    const body = await resp.json();
    return resp.ok ? body : { error: body.error || `the server answered HTTP ${resp.status}.` };
  } catch (err) {
    return { error: "could not reach the ComfyUI server (is the pack's /imgedit/journal route loaded?)." };
  }
}

function journalText(state) {
  if (state.error) return `Journal status unknown: ${state.error}`;
  const size = `${state.records} record(s), ${(state.bytes / 1e6).toFixed(1)} MB in ${state.folder}`;
  if (state.env_off) return `Off for this server: IMGEDIT_JOURNAL=0 is set (${size}).`;
  return state.enabled
    ? `On: an identical paid call (fixed seed) is taken from disk or resumed, never paid twice (${size}).`
    : `Off: every run sends its paid calls again (${size}).`;
}

// Custom renderer, like the key fields: `setter` is never called, the server holds the switch.
function journalField(_name, _setter, _value, _attrs) {
  const root = settingBox("imgedit-journal-setting");
  const label = document.createElement("label");
  label.style.cssText = ROW_CSS;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "imgedit-journal-toggle";
  box.disabled = true;
  label.append(box, document.createTextNode("Keep a journal of paid calls"));
  const status = statusLine("imgedit-journal-status");
  status.textContent = "Checking…";
  const show = (state) => {
    box.checked = !state.error && state.panel;
    box.disabled = !!state.error;
    status.textContent = journalText(state);
  };
  box.addEventListener("change", async () => {
    box.disabled = true;
    show(
      await journalCall({
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ enabled: box.checked }),
      })
    );
  });
  journalCall({}).then(show);
  root.append(label, status);
  return root;
}

function drawPaidBadge(node, ctx) {
  // Above the title bar's left end, outside the node (ComfyUI's own source badge sits at the right).
  if (node.flags && node.flags.collapsed) return;
  const titleHeight = (window.LiteGraph && window.LiteGraph.NODE_TITLE_HEIGHT) || 30;
  ctx.save();
  ctx.font = "bold 11px sans-serif";
  const padX = 6;
  const width = ctx.measureText(BADGE_TEXT).width + padX * 2;
  const height = 16;
  const x = 4;
  const y = -titleHeight - height - 3;
  ctx.fillStyle = "#d89b2b";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, height, 8);
  else ctx.rect(x, y, width, height);
  ctx.fill();
  ctx.fillStyle = "#1b1203";
  ctx.textBaseline = "middle";
  ctx.fillText(BADGE_TEXT, x + padX, y + height / 2 + 0.5);
  ctx.restore();
}

app.registerExtension({
  name: "comfyui-imgedit.keys-and-badges",

  // The settings panel lists entries in reverse registration order: reverse to show Dezgo first.
  settings: [
    {
      id: JOURNAL_SETTING,
      category: ["ImgEdit", "Journal of paid calls", "Enabled"],
      name: "Journal of paid calls",
      tooltip:
        "Records every paid remote call in user/imgedit/journal/ on the server (never the key): a " +
        "queued job interrupted by Cancel or a restart is resumed, an identical call is taken from disk.",
      type: journalField,
      defaultValue: "",
    },
    ...KEY_SERVICES.slice().reverse().map((entry) => ({
      id: entry.id,
      category: ["ImgEdit", "API keys", entry.label],
      name: entry.label,
      tooltip:
        "Sent once to this ComfyUI server, which stores it in user/imgedit/keys.json. It is never " +
        "saved in the browser settings or in a workflow, and never shown again.",
      type: keyField(entry),
      defaultValue: "",
    })),
  ],

  async setup() {
    await fetchStatus();
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const service = PAID_NODES[nodeData.name];
    if (!service) return;
    const title = nodeData.display_name || nodeData.name;
    if (!title.endsWith(PAID_SUFFIX)) nodeData.display_name = title + PAID_SUFFIX;
    const note = `Uses paid ${service} credits on every run.`;
    if (!(nodeData.description || "").startsWith(note)) {
      nodeData.description = nodeData.description ? `${note} ${nodeData.description}` : note;
    }
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const result = onDrawForeground ? onDrawForeground.call(this, ctx, ...rest) : undefined;
      try {
        drawPaidBadge(this, ctx);
      } catch (err) {
        /* drawing a badge must never break the canvas */
      }
      return result;
    };
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated ? onNodeCreated.apply(this, args) : undefined;
      this.color = PAID_COLOR;
      this.bgcolor = PAID_BGCOLOR;
      this.imgeditPaid = service;
      return result;
    };
  },
});
