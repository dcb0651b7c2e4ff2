// simple-bus & co.: the bus node itself has nothing to do; its children were populated already.

import type { Driver } from '../base/driver.ts';

export const simpleBusDriver: Driver = {
  name: 'simple-bus',
  bus: 'platform',
  ofMatch: ['simple-bus', 'simple-mfd', 'simple-pm-bus'],
  probe: () => 0,
};
