// Fault codes a translation can end in, with the SMMUv3 event numbers (IHI 0070 §7.3) so the
// device can put them in an event record unchanged, and the Class field values.

/** No fault: the translation produced an output address. */
export const FAULT_NONE = 0;
/** STE invalid or unsupported stage-2 configuration (e.g. S2ENDI=1, S2AA64=0, bad S2SL0). */
export const C_BAD_STE = 0x04;
/** CD invalid or unsupported stage-1 configuration (e.g. ENDI=1, AA64=0, reserved TG). */
export const C_BAD_CD = 0x0a;
/** External abort on a translation-table fetch (FetchAddr = PA of the descriptor). */
export const F_WALK_EABT = 0x0b;
export const F_TRANSLATION = 0x10;
export const F_ADDR_SIZE = 0x11;
export const F_ACCESS = 0x12;
export const F_PERMISSION = 0x13;
export const F_TLB_CONFLICT = 0x20;

/** Event Class field: the fault happened fetching the CD (its IPA through stage 2). */
export const CLASS_CD = 0;
/** ... fetching a stage-1 translation table descriptor (its IPA through stage 2). */
export const CLASS_TT = 1;
/** ... translating the input address itself. */
export const CLASS_IN = 2;
