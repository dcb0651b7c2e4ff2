import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'forever-wall',
  run() {
    for (;;) {}
  },
});
