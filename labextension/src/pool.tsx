/**
 * The panel's footer: the warm pool, ready/target per kernelspec and its hit rate.
 */
import * as React from 'react';

import { formatRate } from './format';
import type { IPool } from './types';

export function PoolFooter(props: { pool: IPool | null }): React.ReactElement {
  const { pool } = props;
  const specs = pool ? Object.keys(pool.pools).sort() : [];
  return (
    <footer className="jp-KernelSessions-pool" aria-label="Warm kernel pool">
      <span className="jp-KernelSessions-poolTitle">Pool</span>
      {!pool && <span className="jp-KernelSessions-muted">unavailable</span>}
      {pool && specs.length === 0 && (
        <span className="jp-KernelSessions-muted">
          no warm kernels configured
        </span>
      )}
      {pool &&
        specs.map(spec => {
          const s = pool.pools[spec];
          return (
            <span
              key={spec}
              className="jp-KernelSessions-poolSpec"
              data-spec={spec}
              title={`${s.starting} starting · ${s.hits} hits, ${s.misses} misses · median hand-out ${
                s.acquire_p50_ms === null
                  ? '—'
                  : `${s.acquire_p50_ms.toFixed(1)} ms`
              }`}
            >
              {spec}{' '}
              <b>
                {s.ready}/{s.target}
              </b>{' '}
              ready · hit rate {formatRate(s.hit_rate)}
            </span>
          );
        })}
    </footer>
  );
}
