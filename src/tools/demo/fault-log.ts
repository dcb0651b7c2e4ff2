/**
 * The fault demos' record of what the fault core did for one device: every fault it reported
 * (with what it did with it) and every page response, with virtual times, as JSON-able rows.
 */

import {
  type Device,
  type FaultRecord,
  IOMMU_FAULT_PAGE_REQ,
  type IommuFault,
  type Lab,
  permString,
} from '../../index.ts';
import { hasPasid, PAGE_RESP_NAMES } from '../../kernel/iommu/fault/fault.ts';

export interface DemoFault {
  /** Virtual time of the report, ns. */
  t: number;
  type: 'page-request' | 'unrecoverable';
  addr: string;
  pasid: number | null;
  grpid: number | null;
  perm: string;
  /** What the core did with it: delivered to the handler, suppressed (burst), ... */
  outcome: string;
  group: number | null;
}

export interface DemoResponse {
  t: number;
  group: number;
  grpid: number;
  pasid: number | null;
  code: string;
  by: string;
  latencyNs: number;
}

const hex = (v: number) => `0x${v.toString(16)}`;

export function demoFault(t: number, f: IommuFault, outcome: string, group: number | null): DemoFault {
  const pr = f.type === IOMMU_FAULT_PAGE_REQ;
  return {
    t,
    type: pr ? 'page-request' : 'unrecoverable',
    addr: hex(f.addr),
    pasid: hasPasid(f) ? f.pasid : null,
    grpid: pr ? f.grpid : null,
    perm: permString(f.perm),
    outcome,
    group,
  };
}

function demoResponse(r: Extract<FaultRecord, { kind: 'response' }>): DemoResponse {
  return {
    t: r.time,
    group: r.groupId,
    grpid: r.grpid,
    pasid: r.pasid,
    code: PAGE_RESP_NAMES[r.code],
    by: r.by,
    latencyNs: r.latencyNs,
  };
}

/** Record, from now on, the faults reported for `dev` and the responses to them (filled as they happen). */
export function recordFaults(lab: Lab, dev: Device): { faults: DemoFault[]; responses: DemoResponse[] } {
  const log = { faults: [] as DemoFault[], responses: [] as DemoResponse[] };
  lab.faults.observe((r) => {
    if (r.dev !== dev.name) return;
    if (r.kind === 'fault') log.faults.push(demoFault(r.time, r.fault, r.outcome, r.groupId));
    else if (r.kind === 'response') log.responses.push(demoResponse(r));
  });
  return log;
}
