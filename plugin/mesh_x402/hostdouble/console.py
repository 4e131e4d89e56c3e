"""A stand-in for mesh-llm's web console: mounts a plugin's page through the host contract.

mesh-llm's console imports a store plugin's bundle from
`/api/plugins/<name>/web-ui/assets/<entry>` and calls
`registerMeshPluginUi(host)`, then `mount({element, host, page})`
(spec sheet `meshllm-plugin-store.md` §8.4). This server does the same for
tests and the devnet: it serves one HTML page whose script builds that
`host` object (appearance tokens for a light or dark theme, `network.json`
on paths relative to `/api/plugins/<name>/`, in-memory state), serves the
bundle from the plugin's `web/` folder, and relays `/api/plugins/<name>/http/…`
to a host double's management listener, so the page and its data share one
origin as they do in the console.

It listens on 127.0.0.1 only, in a thread of its own: its relay blocks on
the host double, whose event loop must keep running meanwhile.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = ["THEMES", "ConsoleDouble"]

_CONTENT_TYPES: Final = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
# Close to the console's own palettes: enough for a page to prove it follows them.
THEMES: Final = {
    "light": {
        "background": "#ffffff",
        "foreground": "#18181b",
        "panel": "#f7f7f8",
        "panelStrong": "#ededf0",
        "border": "#d4d4d8",
        "borderSoft": "#e4e4e7",
        "accent": "#2563eb",
        "accentInk": "#ffffff",
        "good": "#15803d",
        "warn": "#b45309",
        "bad": "#b91c1c",
        "radius": "6px",
        "radiusLarge": "10px",
    },
    "dark": {
        "background": "#0b0d12",
        "foreground": "#e4e4e7",
        "panel": "#14171f",
        "panelStrong": "#1c202b",
        "border": "#2e3340",
        "borderSoft": "#242834",
        "accent": "#7aa2ff",
        "accentInk": "#0b0d12",
        "good": "#4ade80",
        "warn": "#fbbf24",
        "bad": "#f87171",
        "radius": "6px",
        "radiusLarge": "10px",
    },
}

_PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>{label} · mesh-llm console (double)</title>
<style>html,body{{margin:0;background:{background};}}</style></head>
<body><div id="mount"></div>
<script type="module">
const pluginName = {plugin};
const page = {page_json};
const theme = {theme};
const tokens = {tokens};
const base = `/api/plugins/${{encodeURIComponent(pluginName)}}/`;
function pluginUrl(path) {{
  const segments = path.split('?')[0].split('/');
  if (/^[a-z]+:|^\\/|#|\\\\|[\\x00-\\x1f]/i.test(path)
      || segments.some(s => s === '.' || s === '..')) {{
    throw new Error(`plugin path not allowed: ${{path}}`);
  }}
  return base + path;
}}
let snapshot = {{}};
const subscribers = new Set();
const host = {{
  plugin: {{ name: pluginName }},
  page,
  webUi: {{ state: 'ready', declared: true, enabled: true, available: true }},
  appearance: {{ theme, accent: 'blue', density: 'comfortable', panelStyle: 'solid', tokens }},
  network: {{
    fetchPlugin: (path, init) => fetch(pluginUrl(path), init),
    json: async (path, init) => {{
      const response = await fetch(pluginUrl(path), init);
      if (!response.ok) throw new Error(`${{path}}: HTTP ${{response.status}}`);
      return response.json();
    }}
  }},
  config: {{
    visible: {{ plugin: pluginName, settings: {settings} }},
    requestMutation: async () => {{ throw new Error('config writes are not part of the double'); }}
  }},
  navigation: {{
    navigateTo: (path) => {{ window.location.assign(path); }},
    openPluginPage: () => {{}}
  }},
  notifications: {{ show: (toast) => console.log('toast', JSON.stringify(toast)) }},
  state: {{
    getSnapshot: () => snapshot,
    update: (patch) => {{
      snapshot = {{ ...snapshot, ...patch }};
      subscribers.forEach(f => f(snapshot));
      return snapshot;
    }},
    subscribe: (f) => {{ subscribers.add(f); return () => subscribers.delete(f); }}
  }}
}};
try {{
  const entry = {entry}.split('/').map(encodeURIComponent).join('/');
  const module = await import(base + 'web-ui/assets/' + entry);
  const registration = await module.registerMeshPluginUi(host);
  const mount = registration && registration.pages && registration.pages[page.id];
  if (typeof mount !== 'function') throw new Error(`no mount for page ${{page.id}}`);
  const handle = await mount({{ element: document.getElementById('mount'), host, page }});
  if (!handle || typeof handle.unmount !== 'function') {{
    throw new Error('mount did not return {{unmount()}}');
  }}
  window.__meshPluginHandle = handle;
  document.body.setAttribute('data-mounted', 'true');
}} catch (error) {{
  document.body.setAttribute('data-mount-error', String(error && error.message || error));
}}
</script></body></html>
"""


class ConsoleDouble:
    """Serves the host-contract page for one plugin page, its bundle, and the binding relay.

    Args:
        plugin_name: the plugin's name (its `/api/plugins/<name>/` prefix).
        management_url: the host double's `http://127.0.0.1:<port>`.
        bundle_dir: the web bundle's root folder (the archive's `web/`).
        page: the page declaration (`id`, `label`, `route`, `entry_script`).
        settings: what `host.config.visible.settings` holds.
    """

    def __init__(
        self,
        plugin_name: str,
        management_url: str,
        bundle_dir: Path,
        page: dict[str, str],
        settings: dict[str, object] | None = None,
    ) -> None:
        self.plugin_name = plugin_name
        self.management_url = management_url.rstrip("/")
        self.bundle_dir = bundle_dir.resolve()
        self.page = page
        self.settings = settings or {}
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` (after `start`)."""
        if self._server is None:
            return ""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def page_url(self, theme: str = "light") -> str:
        """The console route of the page (`/plugins/<name>/<page id>`) in a theme."""
        return f"{self.url}/plugins/{self.plugin_name}/{self.page['id']}?theme={theme}"

    def start(self) -> None:
        handler = _handler(self)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ConsoleDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def render(self, theme: str) -> bytes:
        tokens = THEMES.get(theme, THEMES["light"])
        return _PAGE.format(
            label=self.page.get("label", ""),
            background=tokens["background"],
            plugin=json.dumps(self.plugin_name),
            page_json=json.dumps(
                {k: self.page[k] for k in ("id", "label", "route") if k in self.page}
            ),
            theme=json.dumps(theme if theme in THEMES else "light"),
            tokens=json.dumps(tokens),
            settings=json.dumps(self.settings),
            entry=json.dumps(self.page["entry_script"]),
        ).encode()


def _handler(console: ConsoleDouble) -> type[http.server.BaseHTTPRequestHandler]:
    prefix = f"/api/plugins/{console.plugin_name}/"

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return  # the test's output is the assertions, not an access log

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            path = split.path
            if path.startswith(f"/plugins/{console.plugin_name}/"):
                theme = "dark" if "theme=dark" in split.query else "light"
                self._send(200, "text/html; charset=utf-8", console.render(theme))
            elif path.startswith(prefix + "web-ui/assets/"):
                self._asset(path.removeprefix(prefix + "web-ui/assets/"))
            elif path.startswith(prefix + "http/"):
                self._relay()
            else:
                self._send(404, "text/plain", b"not found")

        def _asset(self, relative: str) -> None:
            # The console's rules: no '..', not absolute, no dot segment.
            parts = relative.split("/")
            if not relative or any(p in ("", "..") or p.startswith(".") for p in parts):
                self._send(400, "text/plain", b"bad asset path")
                return
            target = (console.bundle_dir / relative).resolve()
            if not target.is_file() or not target.is_relative_to(console.bundle_dir):
                self._send(404, "text/plain", b"no such asset")
                return
            kind = _CONTENT_TYPES.get(target.suffix, "application/octet-stream")
            self._send(200, kind, target.read_bytes())

        def _relay(self) -> None:
            request = urllib.request.Request(console.management_url + self.path)  # noqa: S310 - loopback URL we built
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    body = response.read()
                    self._send(response.status, response.headers["Content-Type"] or "", body)
            except urllib.error.HTTPError as exc:
                self._send(exc.code, exc.headers.get("Content-Type") or "text/plain", exc.read())
            except OSError as exc:
                self._send(502, "text/plain", str(exc).encode())

    return Handler
