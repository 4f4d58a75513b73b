// `express4` is Express 4 installed under an npm alias, so that the adapter's tests run on both
// majors; @types/express describes the API both share.
declare module 'express4' {
  import express from 'express';
  export default express;
}
