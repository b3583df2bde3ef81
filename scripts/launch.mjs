// The launcher for ES module bin files; the implementation and its invariants are in launch.cjs.
export { launch } from './launch.cjs';
