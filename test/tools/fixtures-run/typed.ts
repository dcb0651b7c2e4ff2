import { defineScenario, type ScenarioContext } from 'iommu-lab';

const check = (ctx: ScenarioContext, n: number): void => ctx.expect(n, 'n').toBeLessThan(100);
export default defineScenario({
  name: 'typed',
  async run(ctx) {
    check(ctx, ctx.seed);
    return { seed: ctx.seed };
  },
});
