// esbuild loads `.proto` files as text (`loader: {'.proto': 'text'}` in build.ts), so the browser
// parses the same schema file the servers use instead of a hand-kept copy.
declare module '*.proto' {
  const text: string;
  export default text;
}
