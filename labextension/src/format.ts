/**
 * Pure helpers: sizes, ages, checkpoint times, and sorting/filtering variables.
 */
import type { IVariable } from './types';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `51 MiB`, `1.5 KiB`, `812 B`; an em dash for unknown. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes) || bytes < 0) {
    return '—';
  }
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** A duration in seconds as `12s`, `5m`, `3h 20m`, `2d 4h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  }
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

/** How long ago `time` was, e.g. `5m ago`; an em dash for no time. */
export function formatAge(time: Date | null, now: number): string {
  if (!time) {
    return '—';
  }
  return `${formatDuration((now - time.getTime()) / 1000)} ago`;
}

/** An ISO date-time as a Date (null when missing or unreadable). */
export function parseTime(value: string | null | undefined): Date | null {
  if (!value) {
    return null;
  }
  const t = Date.parse(value);
  return isNaN(t) ? null : new Date(t);
}

const CHECKPOINT_ID_TIME =
  /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})\d*Z/;

/**
 * When a checkpoint was taken, from its id (`20240101T120000.123456Z-1a2b3c4d`) or an ISO
 * date-time; null when neither.
 */
export function checkpointTime(value: string | null | undefined): Date | null {
  if (!value) {
    return null;
  }
  const m = CHECKPOINT_ID_TIME.exec(value);
  if (m) {
    const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number);
    return new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  }
  return parseTime(value);
}

/** `3×4`, `(10,)` style shape text; empty when there is no shape. */
export function formatShape(shape: number[] | null | undefined): string {
  if (!shape) {
    return '';
  }
  return shape.length === 1 ? `(${shape[0]},)` : shape.join('×');
}

/** The columns the variables table sorts by. */
export type VariableColumn = 'name' | 'type' | 'size' | 'shape' | 'preview';

export interface ISortState {
  column: VariableColumn;
  ascending: boolean;
}

function shapeKey(v: IVariable): number {
  if (v.shape && v.shape.length) {
    return v.shape.reduce((a, b) => a * b, 1);
  }
  return v.len ?? -1;
}

function compare(a: IVariable, b: IVariable, column: VariableColumn): number {
  switch (column) {
    case 'size':
      return (a.size ?? -1) - (b.size ?? -1);
    case 'shape':
      return shapeKey(a) - shapeKey(b);
    case 'type':
      return a.type.localeCompare(b.type);
    case 'preview':
      return (a.preview ?? '').localeCompare(b.preview ?? '');
    default:
      return 0;
  }
}

/**
 * The variables whose name or type contains `filter` (case-insensitive), sorted by a column;
 * ties fall back to the name so the order is stable across refreshes.
 */
export function sortAndFilter(
  variables: ReadonlyArray<IVariable>,
  filter: string,
  sort: ISortState
): IVariable[] {
  const needle = filter.trim().toLowerCase();
  const kept = needle
    ? variables.filter(
        v =>
          v.name.toLowerCase().includes(needle) ||
          v.type.toLowerCase().includes(needle)
      )
    : [...variables];
  const sign = sort.ascending ? 1 : -1;
  return kept.sort(
    (a, b) =>
      sign * compare(a, b, sort.column) || sign * a.name.localeCompare(b.name)
  );
}

/** A pool's hit rate as a percentage, or an em dash before the first hand-out. */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined) {
    return '—';
  }
  return `${Math.round(rate * 100)}%`;
}
