import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'throws-run',
  async run() {
    const o = null;
    return o.field;
  },
});
