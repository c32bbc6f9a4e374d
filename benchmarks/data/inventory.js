// A small inventory module: the input of bench_serving.py's "rewrite as TypeScript" scenario.
const LOW_STOCK = 5;

class Inventory {
  constructor(items = []) {
    this.items = new Map();
    for (const item of items) this.add(item);
  }

  add({ sku, name, price, quantity = 0, tags = [] }) {
    if (!sku || typeof sku !== "string") throw new Error("sku is required");
    if (price < 0) throw new Error(`negative price for ${sku}`);
    const existing = this.items.get(sku);
    if (existing) {
      existing.quantity += quantity;
      return existing;
    }
    const item = { sku, name, price, quantity, tags: [...tags] };
    this.items.set(sku, item);
    return item;
  }

  remove(sku, quantity) {
    const item = this.items.get(sku);
    if (!item) return false;
    if (quantity > item.quantity) throw new Error(`only ${item.quantity} of ${sku} left`);
    item.quantity -= quantity;
    return true;
  }

  lowStock(threshold = LOW_STOCK) {
    return [...this.items.values()].filter((item) => item.quantity <= threshold);
  }

  totalValue() {
    let total = 0;
    for (const item of this.items.values()) total += item.price * item.quantity;
    return Math.round(total * 100) / 100;
  }
}

function parseCsv(text) {
  return text
    .trim()
    .split("\n")
    .slice(1)
    .map((line) => {
      const [sku, name, price, quantity] = line.split(",");
      return { sku, name, price: Number(price), quantity: Number(quantity) };
    });
}

module.exports = { Inventory, parseCsv, LOW_STOCK };
