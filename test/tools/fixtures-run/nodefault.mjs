export const scenario = { name: 'x', run() {} };
