/**
 * The variables table of one session: sortable columns and a filter box.
 */
import * as React from 'react';

import { formatBytes, formatShape, sortAndFilter } from './format';
import type { ISortState, VariableColumn } from './format';
import type { IVariableListing } from './types';

const COLUMNS: ReadonlyArray<{ key: VariableColumn; title: string }> = [
  { key: 'name', title: 'Name' },
  { key: 'type', title: 'Type' },
  { key: 'size', title: 'Size' },
  { key: 'shape', title: 'Shape' },
  { key: 'preview', title: 'Value' }
];

export interface IVariablesTableProps {
  session: string;
  listing: IVariableListing | null;
  error: string | null;
  /** Shown instead of the listing when there is none to show, and nothing went wrong. */
  note?: string | null;
}

export function VariablesTable(
  props: IVariablesTableProps
): React.ReactElement {
  const { listing, error, session, note } = props;
  const [filter, setFilter] = React.useState('');
  const [sort, setSort] = React.useState<ISortState>({
    column: 'name',
    ascending: true
  });
  const rows = listing ? sortAndFilter(listing.variables, filter, sort) : [];

  const onSort = (column: VariableColumn) =>
    setSort(current => ({
      column,
      ascending: current.column === column ? !current.ascending : true
    }));

  return (
    <section
      className="jp-KernelSessions-variables"
      aria-label={`Variables of ${session}`}
    >
      <div className="jp-KernelSessions-sectionHeader">
        <span className="jp-KernelSessions-sectionTitle">
          Variables{listing ? ` (${listing.count})` : ''}
        </span>
        {listing?.stale && (
          <span
            className="jp-KernelSessions-stale"
            title="The kernel is busy; this is the last listing"
          >
            busy — last listing
          </span>
        )}
        <input
          className="jp-KernelSessions-filter jp-mod-styled"
          type="search"
          placeholder="Filter"
          title="Show the variables whose name or type contains this"
          aria-label="Filter variables"
          value={filter}
          onChange={event => setFilter(event.target.value)}
        />
      </div>
      {error && <div className="jp-KernelSessions-inlineError">{error}</div>}
      {!error && !listing && note && (
        <div className="jp-KernelSessions-hint">{note}</div>
      )}
      {listing && (
        <table className="jp-KernelSessions-table jp-KernelSessions-variablesTable">
          <thead>
            <tr>
              {COLUMNS.map(c => (
                <th
                  key={c.key}
                  aria-sort={
                    sort.column === c.key
                      ? sort.ascending
                        ? 'ascending'
                        : 'descending'
                      : 'none'
                  }
                >
                  <button
                    className="jp-KernelSessions-sortButton"
                    data-column={c.key}
                    onClick={() => onSort(c.key)}
                  >
                    {c.title}
                    {sort.column === c.key
                      ? sort.ascending
                        ? ' ▲'
                        : ' ▼'
                      : ''}
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map(v => (
              <tr
                key={v.name}
                data-variable={v.name}
                title={v.error ?? undefined}
              >
                <td className="jp-KernelSessions-varName">{v.name}</td>
                <td className="jp-KernelSessions-varType">{v.type}</td>
                <td className="jp-KernelSessions-varSize">
                  {formatBytes(v.size)}
                </td>
                <td className="jp-KernelSessions-varShape">
                  {formatShape(v.shape) ||
                    (v.len !== null && v.len !== undefined
                      ? `len ${v.len}`
                      : '')}
                </td>
                <td className="jp-KernelSessions-varPreview">
                  {v.preview ?? ''}
                </td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td
                  colSpan={COLUMNS.length}
                  className="jp-KernelSessions-empty"
                >
                  {filter
                    ? 'No variable matches the filter.'
                    : 'No variables yet.'}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {listing?.truncated && (
        <div className="jp-KernelSessions-hint">
          Only the first {listing.variables.length} are shown.
        </div>
      )}
    </section>
  );
}
