import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'blocked',
  async run() {
    await new Promise(() => {});
  },
});
