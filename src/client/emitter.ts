/** A small typed event emitter for the browser (no Node EventEmitter in pages). */
export class Emitter<Events extends Record<string, unknown>> {
  #handlers = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Subscribe; returns the function that unsubscribes. */
  on<K extends keyof Events>(event: K, handler: (payload: Events[K]) => void): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as (payload: never) => void);
    return () => this.off(event, handler);
  }

  off<K extends keyof Events>(event: K, handler: (payload: Events[K]) => void): void {
    this.#handlers.get(event)?.delete(handler as (payload: never) => void);
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const h of [...(this.#handlers.get(event) ?? [])]) {
      try {
        (h as (p: Events[K]) => void)(payload);
      } catch (e) {
        // A page's handler must not break the player's own loop.
        console.error(`canopy player: ${String(event)} handler threw`, e);
      }
    }
  }
}
