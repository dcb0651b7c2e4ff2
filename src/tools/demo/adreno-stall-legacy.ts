/**
 * Demo 'adreno-stall-legacy': the adreno-stall demo with the v5.14..v6.15 fault flow — the
 * arm-smmu handler leaves the transaction stalled, drm/msm's fault worker captures the crash
 * state and resumes it (terminate) with the qcom resume_translation; stall stays on.
 */

import { adrenoStallScenario } from './adreno-stall.ts';

export default adrenoStallScenario('adreno-stall-legacy', 'driver');
