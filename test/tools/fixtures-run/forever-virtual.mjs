import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'forever-virtual',
  async run({ lab }) {
    for (;;) await lab.sleep(1_000_000);
  },
});
