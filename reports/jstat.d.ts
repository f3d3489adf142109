/** The part of jstat (CommonJS, no types of its own) the reports use: Student's t quantile function. */
declare module 'jstat' {
  const jStat: { studentt: { inv(p: number, dof: number): number } };
  export default jStat;
}
