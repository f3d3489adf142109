/** The part of jstat (no types of its own) the reports use: Student's t quantile function. */
declare module 'jstat' {
  export const jStat: { studentt: { inv(p: number, dof: number): number } };
}
