import { createServer, connect, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { z } from "zod";
// In your project: from "matrix-courier".
import { defineBridge, RemoteUnavailableError, type BridgeHost } from "../../src/index.ts";

// The network: a line-based TCP chat. A client says `NICK ann`, `JOIN lobby`, `SAY lobby hi`;
// everyone in the channel (the sender too) gets `MSG lobby ann hi`.
export function startToyChat(port = 0): Promise<Server> {
  const members = new Map<string, Set<Socket>>();
  const server = createServer((socket) => {
    let nick = "anon";
    createInterface({ input: socket }).on("line", (line) => {
      const [verb, channel = "", ...words] = line.split(" ");
      if (verb === "NICK") nick = channel;
      if (verb === "JOIN") members.set(channel, (members.get(channel) ?? new Set()).add(socket));
      if (verb === "SAY")
        for (const peer of members.get(channel) ?? [])
          peer.write(`MSG ${channel} ${nick} ${words.join(" ")}\n`);
    });
    socket.on("close", () => members.forEach((set) => set.delete(socket)));
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

// The bridge: one connection (relay mode), named after the bot; Matrix users speak through it.
export default defineBridge({
  name: "toy",
  config: { port: z.number().int(), nick: z.string().default("matrix") },
  connector: ({ config }) => {
    let socket: Socket | undefined;
    let host: BridgeHost | undefined;
    const join = async (channel: string) => void socket?.write(`JOIN ${channel}\n`);
    return {
      async connect(bridgeHost) {
        host = bridgeHost;
        socket = connect(config.port, "127.0.0.1");
        socket.write(`NICK ${config.nick}\n`);
        for (const channel of await bridgeHost.channels()) await join(channel);
        createInterface({ input: socket }).on("line", (line) => {
          const [verb, channelId = "", nick = "", ...words] = line.split(" ");
          // Our own lines come back too: not reported, or Matrix would see them twice.
          if (verb !== "MSG" || nick === config.nick) return;
          void host?.report({
            kind: "message",
            channelId,
            sender: { id: nick, displayName: nick },
            text: words.join(" "),
          });
        });
      },
      async disconnect() {
        socket?.destroy();
      },
      async sendMessage(message) {
        if (!socket || socket.destroyed) throw new RemoteUnavailableError("toy");
        const text = message.emote ? `* ${message.sender.displayName} ${message.text}` : message.text;
        socket.write(`SAY ${message.channelId} <${message.sender.displayName}> ${text}\n`);
        return undefined; // the toy network has no message ids
      },
      lookupUser: async (id) => ({ id, displayName: id }),
      lookupChannel: async (id) => ({ id, name: `#${id}` }),
      joinChannel: join,
    };
  },
});
