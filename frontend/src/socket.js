// The topology socket: connects, reconnects with backoff, and hands each
// message to the map. See webapp/maps/consumers.py for the protocol.

const CLOSE_UNAUTHENTICATED = 4401;

export class TopologySocket {
  constructor(path, level, { onMessage, onState }) {
    this.url = new URL(path, window.location.href);
    this.url.protocol = this.url.protocol === "https:" ? "wss:" : "ws:";
    this.url.searchParams.set("level", level);
    this.onMessage = onMessage;
    this.onState = onState;
    this.failures = 0;
    this.socket = null;
  }

  connect() {
    this.onState("connecting");
    const socket = new WebSocket(this.url);
    let opened = false;
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
      this.failures = 0;
      this.onState("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === CLOSE_UNAUTHENTICATED) {
        this.toLogin();
        return;
      }
      if (!opened) this.checkSession();
      this.retry();
    });
  }

  retry() {
    const delay = Math.min(10000, 500 * 2 ** this.failures);
    this.failures += 1;
    this.onState("closed", delay);
    window.setTimeout(() => this.connect(), delay);
  }

  // A refused handshake looks like a network error in the browser: ask the
  // server whether the session is still valid before retrying blindly.
  async checkSession() {
    try {
      const response = await fetch("/api/graph/?level=host", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) this.toLogin();
    } catch {
      // The server is down: keep retrying.
    }
  }

  toLogin() {
    const next = window.location.pathname + window.location.search;
    window.location.assign(`/login/?next=${encodeURIComponent(next)}`);
  }
}
