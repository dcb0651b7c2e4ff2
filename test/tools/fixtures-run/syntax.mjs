import { defineScenario } from 'iommu-lab';
export default defineScenario({ name: 'broken', async run(ctx) { return ctx.lab.now +; } });
