/** Small DOM helpers shared by the pages. */

export function param(name: string): string | undefined {
  const v = new URLSearchParams(location.search).get(name);
  return v === null || v === '' ? undefined : v;
}

export function flag(name: string): boolean {
  const v = param(name);
  return v !== undefined && v !== '0' && v !== 'false';
}

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

export function setText(id: string, text: string): void {
  const el = document.getElementById(id);
  if (el && el.textContent !== text) el.textContent = text;
}

export function setBadge(id: string, state: string): void {
  const el = $(id);
  el.dataset.state = state;
  el.textContent = state;
}

export function showNotice(text: string): void {
  const el = $('notice');
  el.textContent = text;
  el.hidden = false;
}

/** Append to an event log (newest first), keeping at most `max` entries. */
export function logLine(listId: string, text: string, cls?: string, max = 60): void {
  const list = $(listId);
  const li = document.createElement('li');
  const t = new Date();
  li.textContent = `${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}  ${text}`;
  if (cls) li.className = cls;
  list.prepend(li);
  while (list.children.length > max) list.lastElementChild?.remove();
}

export const fmtMs = (v: number | undefined): string => (v === undefined ? '–' : `${Math.round(v)} ms`);
export const fmtKbps = (v: number | undefined): string => (v === undefined ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} Mbit/s` : `${Math.round(v)} kbit/s`);
export const fmtPct = (v: number | undefined): string => (v === undefined ? '–' : `${(v * 100).toFixed(1)} %`);
