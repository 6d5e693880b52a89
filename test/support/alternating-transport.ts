import type { Transport } from "@connectrpc/connect";

/**
 * One client over several servers: each call goes to the next one in turn, so a hold's
 * COLLECTs alternate between instances and its COMMIT lands on either (a load balancer
 * with no affinity, the worst case for a shared store).
 */
export function alternatingTransport(transports: Transport[]): Transport {
  let next = 0;
  const pick = () => {
    const t = transports[next % transports.length] as Transport;
    next++;
    return t;
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) =>
      pick().unary(method, signal, timeoutMs, header, input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) =>
      pick().stream(method, signal, timeoutMs, header, input, contextValues),
  };
}
