import { defineScenario } from 'iommu-lab';
export default defineScenario({
  name: 'fail',
  async run({ lab, expect, seed }) {
    lab.machine.trace.emit('scenario', 'note', `about to check seed ${seed}`);
    expect(seed % 3, 'seed mod 3').not.toBe(0);
  },
});
