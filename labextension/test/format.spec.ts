/**
 * Sizes, ages, checkpoint times, and sorting/filtering of the variables table.
 */
import {
  checkpointTime,
  formatAge,
  formatBytes,
  formatDuration,
  formatRate,
  formatShape,
  sortAndFilter
} from '../src/format';
import type { IVariable } from '../src/types';
import { NAME_PATTERN, SESSION_NAME_RULE } from '../src/types';

const VARS: IVariable[] = [
  {
    name: 'df',
    type: 'pandas.DataFrame',
    kind: 'data',
    size: 8000,
    shape: [100, 10],
    preview: 'DataFrame'
  },
  { name: 'x', type: 'int', kind: 'data', size: 28, preview: '42' },
  {
    name: 'names',
    type: 'list',
    kind: 'data',
    size: 72,
    len: 3,
    preview: "['a', 'b', 'c']"
  },
  {
    name: 'arr',
    type: 'numpy.ndarray',
    kind: 'data',
    size: 800,
    shape: [100],
    preview: 'array([...])'
  },
  {
    name: 'f',
    type: 'function',
    kind: 'function',
    size: null,
    preview: '<function f>'
  }
];

describe('format', () => {
  it('formats bytes', () => {
    expect(formatBytes(812)).toBe('812 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(51 * 1024 * 1024)).toBe('51 MiB');
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(-1)).toBe('—');
  });

  it('formats durations and ages', () => {
    expect(formatDuration(12.7)).toBe('12s');
    expect(formatDuration(300)).toBe('5m');
    expect(formatDuration(3 * 3600 + 20 * 60)).toBe('3h 20m');
    expect(formatDuration(2 * 86400 + 4 * 3600)).toBe('2d 4h');
    expect(formatDuration(-5)).toBe('0s');
    const now = Date.UTC(2024, 0, 1, 12, 5, 0);
    expect(formatAge(new Date(Date.UTC(2024, 0, 1, 12, 0, 0)), now)).toBe(
      '5m ago'
    );
    expect(formatAge(null, now)).toBe('—');
  });

  it('reads checkpoint times from ids and ISO strings', () => {
    expect(
      checkpointTime('20240102T030405.678901Z-1a2b3c4d')?.toISOString()
    ).toBe('2024-01-02T03:04:05.678Z');
    expect(checkpointTime('2024-01-02T03:04:05Z')?.toISOString()).toBe(
      '2024-01-02T03:04:05.000Z'
    );
    expect(checkpointTime('garbage')).toBeNull();
    expect(checkpointTime(null)).toBeNull();
  });

  it('formats shapes and rates', () => {
    expect(formatShape([100, 10])).toBe('100×10');
    expect(formatShape([100])).toBe('(100,)');
    expect(formatShape(null)).toBe('');
    expect(formatRate(0.756)).toBe('76%');
    expect(formatRate(null)).toBe('—');
  });

  it('sorts by any column, both ways, ties by name', () => {
    const names = (
      column: 'name' | 'type' | 'size' | 'shape' | 'preview',
      ascending = true
    ) => sortAndFilter(VARS, '', { column, ascending }).map(v => v.name);
    expect(names('name')).toEqual(['arr', 'df', 'f', 'names', 'x']);
    expect(names('name', false)).toEqual(['x', 'names', 'f', 'df', 'arr']);
    expect(names('size')).toEqual(['f', 'x', 'names', 'arr', 'df']);
    expect(names('shape', false)).toEqual(['df', 'arr', 'names', 'x', 'f']);
    expect(names('type')).toEqual(['f', 'x', 'names', 'arr', 'df']);
  });

  it('filters by name or type, case-insensitively', () => {
    const sort = { column: 'name' as const, ascending: true };
    expect(sortAndFilter(VARS, 'NUMPY', sort).map(v => v.name)).toEqual([
      'arr'
    ]);
    expect(sortAndFilter(VARS, ' a', sort).map(v => v.name)).toEqual([
      'arr',
      'df',
      'names'
    ]);
    expect(sortAndFilter(VARS, 'zzz', sort)).toEqual([]);
    expect(VARS[0].name).toBe('df'); // the input is left alone
  });
});

describe('the session naming rule', () => {
  it('is the same as an HTML input pattern (compiled with the v flag)', () => {
    const html = new RegExp(`^(?:${NAME_PATTERN})$`, 'v');
    for (const name of [
      'etl',
      'train-v2',
      'a.b_c',
      '0',
      'x'.repeat(63),
      'Etl',
      'a b',
      '-a',
      '',
      'x'.repeat(64),
      'é'
    ]) {
      expect([name, html.test(name)]).toEqual([
        name,
        SESSION_NAME_RULE.test(name)
      ]);
    }
    expect(html.test('train-v2')).toBe(true);
    expect(html.test('Not Valid')).toBe(false);
  });
});
