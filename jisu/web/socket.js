// The page's one WebSocket to /v1/ws. The server answers one request at a time per socket, so
// there is at most one `current` answer; its events go to the handler given to ask().
// When the socket closes (server stopped, network gone) the current answer gets a synthetic
// {"type": "disconnected"} event, and the socket reconnects with a growing delay. A server
// with API keys closes the socket with code 4401 when the key is missing or wrong: then it
// does not reconnect until the page has a new key (reconnect()).

const RETRY_DELAYS_S = [1, 2, 4, 8, 15];
const CLOSE_UNAUTHORIZED = 4401;

export class ChatSocket {
  /** onStatus({state: "open" | "connecting" | "closed" | "unauthorized", retryIn}) keeps the
   * banner current; getKey() is the access key to send first ("" for none). */
  constructor(url, onStatus, getKey) {
    this.url = url;
    this.onStatus = onStatus;
    this.getKey = getKey;
    this.ws = null;
    this.ready = false; // open, and the key (if any) accepted
    this.current = null;
    this.attempt = 0;
    this.timer = null;
  }

  get connected() {
    return this.ready && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Drop the current connection (if any) and connect again now, e.g. with a new key. */
  reconnect() {
    this.close();
    this.attempt = 0;
    this.connect();
  }

  /** Drop the connection without reconnecting (until connect()); an answer in flight ends
   * as if the connection had dropped. */
  close() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    const old = this.ws;
    this.ws = null;
    this.ready = false;
    if (old) {
      old.onclose = null;
      old.close();
    }
    const handler = this.current;
    this.current = null;
    handler?.({ type: "disconnected" });
  }

  connect() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.onStatus({ state: "connecting" });
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      const key = this.getKey();
      if (key) {
        ws.send(JSON.stringify({ type: "auth", api_key: key })); // "ready" answers it
      } else {
        this.ready = true;
        this.onStatus({ state: "open" });
      }
    };
    ws.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "ready") {
        if (!this.ready) {
          this.ready = true;
          this.onStatus({ state: "open" });
        }
        return;
      }
      const handler = this.current;
      if (event.type === "done" || event.type === "error") this.current = null;
      handler?.(event);
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      const handler = this.current;
      this.current = null;
      handler?.({ type: "disconnected" });
      if (close.code === CLOSE_UNAUTHORIZED) this.onStatus({ state: "unauthorized" });
      else this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    const delay = RETRY_DELAYS_S[Math.min(this.attempt, RETRY_DELAYS_S.length - 1)];
    this.attempt += 1;
    let left = delay;
    this.onStatus({ state: "closed", retryIn: left });
    this.countdown = setInterval(() => {
      left -= 1;
      if (left > 0) this.onStatus({ state: "closed", retryIn: left });
    }, 1000);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }

  /** Send a chat request; `handler` receives queued/progress/token/done/error/disconnected. */
  ask(payload, handler) {
    if (!this.connected) return false;
    this.current = handler;
    this.ws.send(JSON.stringify({ type: "chat", ...payload }));
    return true;
  }

  /** Ask the server to stop the current answer; it confirms with "done" (finish_reason "cancelled"). */
  cancel() {
    if (this.connected && this.current) this.ws.send(JSON.stringify({ type: "cancel" }));
  }
}
