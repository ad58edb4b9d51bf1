// The topology socket: connects, reconnects with backoff, and hands each
// message to the map. See webapp/maps/consumers.py for the protocol.
//
// One socket follows one level. Switching level or looking at the past closes
// it on purpose; a generation number drops what an old socket still delivers.
// A large snapshot comes in parts; the map is handed whole ones, and its
// nodes alone once they are in (a fleet draws its tiles meanwhile).
//
// Snapshots and diffs come in binary frames, each a zlib stream of the
// message's JSON (made once on the server for every open map: a tenth of the
// bytes to copy and send per socket); errors come in text frames. Inflating
// is asynchronous, so messages go through one queue and reach the map in the
// order they came.

const CLOSE_UNAUTHENTICATED = 4401;

// ``onMessage`` gets each diff and error as sent, and each snapshot whole:
// its ``graph`` joined from all parts, ``firstPartAt`` when the first came
// (performance.now(), for bench/map_render.py). A snapshot in parts sends its
// nodes first: once they are all in, and before its links are, ``onMessage``
// also gets a ``{type: "snapshot-nodes", graph: {nodes, links: []}}`` (a
// message of this page's own: a fleet draws its tiles while the links still
// come); the whole snapshot that follows holds the very same ``nodes`` array.
export class TopologySocket {
  constructor(path, level, { onMessage, onState }) {
    this.url = new URL(path, window.location.href);
    this.url.protocol = this.url.protocol === "https:" ? "wss:" : "ws:";
    this.url.searchParams.set("level", level);
    this.onMessage = onMessage;
    this.onState = onState;
    this.failures = 0;
    this.socket = null;
    this.generation = 0;
    this.retryTimer = null;
    this.paused = false;
    this.partial = null; // a snapshot's parts so far
    this.firstPartAt = 0;
    this.openedAt = null; // performance.now() the first socket opened (benchmarks)
    // What came in, for bench/map_fleet.py: messages, characters of JSON,
    // bytes on the wire, diffs.
    this.received = { messages: 0, chars: 0, bytes: 0, diffs: 0 };
    this.decoded = Promise.resolve(); // the last message's turn in the queue
  }

  get level() {
    return this.url.searchParams.get("level");
  }

  connect() {
    this.stop();
    this.paused = false;
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    this.onState("connecting");
    const socket = new WebSocket(this.url);
    socket.binaryType = "blob"; // inflated as a stream, never copied whole
    let opened = false;
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (!current()) return;
      opened = true;
      if (this.openedAt === null) this.openedAt = performance.now();
      this.failures = 0;
      this.onState("open");
    });
    socket.addEventListener("message", (event) => {
      if (!current()) return;
      this.decoded = this.decoded.then(async () => {
        let text;
        let message;
        try {
          text = await messageText(event.data);
          message = JSON.parse(text);
        } catch {
          return; // not a zlib stream, or not JSON: dropped
        }
        if (!current()) return;
        this.handleMessage(message, text.length, event.data);
      });
    });
    socket.addEventListener("close", (event) => {
      if (!current()) return;
      if (event.code === CLOSE_UNAUTHENTICATED) {
        this.toLogin();
        return;
      }
      if (!opened) this.checkSession();
      this.retry();
    });
  }

  handleMessage(message, chars, data) {
    this.received.messages += 1;
    this.received.chars += chars;
    this.received.bytes += typeof data === "string" ? data.length : data.size;
    if (message.type === "snapshot") {
      message.graph = this.joinParts(message);
      if (!message.graph) {
        this.nodesIn(message);
        return;
      }
      message.firstPartAt = this.firstPartAt;
    } else if (message.type === "diff") {
      this.received.diffs += 1;
    }
    this.onMessage(message);
  }

  // A large snapshot comes in parts (nodes first, then links): the whole
  // graph once the last part is in, else null.
  joinParts(message) {
    const parts = Number(message.parts) || 1;
    const part = Number(message.part) || 0;
    const graph = message.graph || {};
    if (part === 0) this.firstPartAt = performance.now();
    if (parts === 1) return graph;
    if (part === 0) this.partial = { nodes: [], links: [], nodesSent: false };
    if (!this.partial) return null;
    this.partial.nodes.push(...(graph.nodes || []));
    this.partial.links.push(...(graph.links || []));
    if (part < parts - 1) return null;
    const whole = this.partial;
    this.partial = null;
    return whole;
  }

  // A snapshot's nodes are all in once its first part of links is (the
  // server sends them in that order): handed on once, with no links.
  nodesIn(message) {
    const partial = this.partial;
    if (!partial || partial.nodesSent || !partial.links.length) return;
    partial.nodesSent = true;
    this.onMessage({
      type: "snapshot-nodes",
      level: message.level,
      graph: { nodes: partial.nodes, links: [] },
      firstPartAt: this.firstPartAt,
    });
  }

  // Follow another level: a fresh socket, whose snapshot replaces the map.
  setLevel(level) {
    this.url.searchParams.set("level", level);
    if (!this.paused) this.connect();
  }

  // Stop following (the map shows the past); resume() reconnects.
  pause() {
    this.stop();
    this.paused = true;
    this.onState("paused");
  }

  resume() {
    this.connect();
  }

  stop() {
    this.generation += 1;
    window.clearTimeout(this.retryTimer);
    if (this.socket) {
      this.socket.close(1000);
      this.socket = null;
    }
  }

  retry() {
    const delay = Math.min(10000, 500 * 2 ** this.failures);
    this.failures += 1;
    this.onState("closed", delay);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
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

// A frame's JSON text: a text frame's as it is, a binary frame's inflated
// (a zlib stream, see webapp/maps/frames.py).
async function messageText(data) {
  if (typeof data === "string") return data;
  const inflated = data.stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(inflated).text();
}
