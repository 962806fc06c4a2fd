use super::*;

const PY_SERVICE: &str = r#"from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)

    @property
    def norm(self) -> float:
        return (self.x**2 + self.y**2) ** 0.5

    def __str__(self) -> str:
        return f"Point({self.x:.2f}, {self.y!r}) with {len(self.tags)} tags"


class Cache(Generic[T]):
    def __init__(self, loader, *, size: int = 128) -> None:
        self._loader = loader
        self._items: dict[str, T] = {}
        self._size = size

    async def get(self, key: str) -> T:
        if (hit := self._items.get(key)) is not None:
            return hit
        value = await self._loader(key)
        self._items[key] = value
        return value


def describe(command) -> str:
    match command:
        case {"action": "move", "to": [x, y]}:
            return f"move to {x},{y}"
        case Point(x=0, y=0):
            return "origin"
        case [first, *rest] if rest:
            return f"{first} and {len(rest)} more"
        case str() | bytes():
            return "text"
        case _:
            return "unknown"


async def main() -> None:
    cache = Cache(lambda k: asyncio.sleep(0, result=k.upper()))
    values = await asyncio.gather(*(cache.get(k) for k in ("a", "b")))
    squares = {n: n * n for n in range(10) if n % 2 == 0}
    print(values, squares, sorted(squares, key=lambda n: -n))
"#;

const PY_SCRIPT: &str = r#"#!/usr/bin/env python3
"""Summarise a log file."""
import contextlib
import sys
from collections import Counter


class LogError(Exception):
    pass


@contextlib.contextmanager
def opened(path):
    handle = open(path, encoding="utf-8")
    try:
        yield handle
    finally:
        handle.close()


def parse(lines):
    for number, line in enumerate(lines, start=1):
        level, _, rest = line.partition(" ")
        if not rest:
            raise LogError(f"line {number}: no message")
        yield level, rest.rstrip("\n")


def summarise(path: str, *levels: str, **options) -> Counter[str]:
    counts: Counter[str] = Counter()
    with opened(path) as handle:
        try:
            for level, _message in parse(handle):
                if levels and level not in levels:
                    continue
                counts[level] += 1
        except LogError as error:
            print(error, file=sys.stderr)
        else:
            options.setdefault("done", True)
    return counts


def first[T](items: list[T]) -> T | None:
    return items[0] if items else None


if __name__ == "__main__":
    total = summarise(sys.argv[1], "ERROR", "WARN")
    print(*(f"{k}={v}" for k, v in total.most_common()), sep=", ")
"#;

const RS_LIB: &str = r#"use std::collections::HashMap;
use std::fmt;

/// Borrowed words, counted.
pub struct Counter<'a> {
    counts: HashMap<&'a str, usize>,
}

impl<'a> Counter<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut counts = HashMap::new();
        for word in text.split_whitespace() {
            *counts.entry(word).or_insert(0) += 1;
        }
        Counter { counts }
    }

    pub fn top<'s>(&'s self, n: usize) -> Vec<(&'a str, usize)>
    where
        'a: 's,
    {
        let mut pairs: Vec<_> = self.counts.iter().map(|(w, c)| (*w, *c)).collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        pairs.into_iter().take(n).collect()
    }
}

impl fmt::Display for Counter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} distinct words", self.counts.len())
    }
}

macro_rules! square {
    ($x:expr) => {
        $x * $x
    };
}

pub async fn fetch<T: Clone + Send + 'static>(items: &[T]) -> Option<T> {
    let first = items.first()?.clone();
    let _ = square!(3);
    Some(first)
}
"#;

const RS_MAIN: &str = r##"#![allow(dead_code)]

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Circle { radius: f64 },
    Rect(f64, f64),
}

struct Buffer<const N: usize> {
    bytes: [u8; N],
}

fn area(shape: &Shape) -> f64 {
    match shape {
        Shape::Circle { radius } if *radius > 0.0 => std::f64::consts::PI * radius * radius,
        Shape::Circle { .. } => 0.0,
        Shape::Rect(w, h) => w * h,
    }
}

fn parse(input: &str) -> Result<Vec<u32>, std::num::ParseIntError> {
    input.split(',').map(|s| s.trim().parse::<u32>()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(arg) = std::env::args().nth(1) else {
        return Ok(());
    };
    let numbers = parse(&arg)?;
    let raw = r#"a "quoted" word"#;
    let bytes = b"\x00\xff";
    let total: u32 = 'outer: loop {
        for n in &numbers {
            if *n > 100 {
                break 'outer *n;
            }
        }
        break numbers.iter().sum();
    };
    let shapes = vec![Shape::Circle { radius: 1.0 }, Shape::Rect(2.0, 3.0)];
    let sum: f64 = shapes.iter().map(area).sum();
    println!("{total} {sum:.1} {raw} {bytes:?}");
    Ok(())
}
"##;

const JS_MODULE: &str = r#"import { readFile } from "node:fs/promises";
import path from "node:path";

export class Store {
  #items = new Map();
  static instances = 0;

  static {
    Store.instances = 0;
  }

  constructor(name, { limit = 10, ...rest } = {}) {
    this.name = name;
    this.limit = limit;
    this.options = rest;
    Store.instances += 1;
  }

  get size() {
    return this.#items.size;
  }

  async load(file) {
    const text = await readFile(path.join(".", file), "utf8");
    for (const [key, value] of Object.entries(JSON.parse(text))) {
      this.#items.set(key, value ?? null);
    }
    return this;
  }

  *keys() {
    yield* this.#items.keys();
  }
}

export const summary = (store) =>
  `${store.name}: ${store.size} items, first ${[...store.keys()][0]?.toUpperCase()}`;

export default async function main(argv = process.argv.slice(2)) {
  const store = await new Store("main").load(argv[0] ?? "data.json");
  const pattern = /^[a-z]+\d*$/i;
  const big = 9_007_199_254_740_993n;
  console.log(summary(store), pattern.test("abc1"), big);
}
"#;

const JSX_COMPONENT: &str = r#"import React, { useState, useEffect } from "react";

function useDebounced(value, delay = 200) {
  const [current, setCurrent] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setCurrent(value), delay);
    return () => clearTimeout(timer);
  }, [value, delay]);
  return current;
}

export function SearchBox({ items, onPick }) {
  const [query, setQuery] = useState("");
  const debounced = useDebounced(query);
  const matches = items.filter((item) => item.label.includes(debounced));

  return (
    <>
      <input
        value={query}
        placeholder="Search…"
        onChange={(event) => setQuery(event.target.value)}
      />
      {matches.length === 0 ? (
        <p className="empty">No results for “{debounced}”</p>
      ) : (
        <ul>
          {matches.map((item) => (
            <li key={item.id} onClick={() => onPick?.(item)}>
              {item.label}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
"#;

const TS_REPO: &str = r#"export interface Entity {
  readonly id: string;
  createdAt: Date;
}

export interface User extends Entity {
  kind: "user";
  email: string;
  roles?: ReadonlyArray<Role>;
}

export enum Role {
  Admin = "admin",
  Viewer = "viewer",
}

type Partialize<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;
type Handler<E> = E extends { kind: infer K } ? (event: E, kind: K) => void : never;

export function isUser(value: unknown): value is User {
  return typeof value === "object" && value !== null && (value as User).kind === "user";
}

export abstract class Repository<T extends Entity> {
  protected readonly items = new Map<string, T>();

  abstract validate(item: T): asserts item is T;

  async save(item: Partialize<T, "createdAt">): Promise<T> {
    const full = { createdAt: new Date(), ...item } as T;
    this.validate(full);
    this.items.set(full.id, full);
    return full;
  }

  find<K extends keyof T>(key: K, value: T[K]): T | undefined {
    for (const item of this.items.values()) {
      if (item[key] === value) return item;
    }
    return undefined;
  }
}

export const config = { retries: 3, backoff: [100, 200] } as const satisfies Record<string, unknown>;
"#;

const TS_UTIL: &str = r#"import type { Readable } from "node:stream";

export namespace Format {
  export const separator = ", ";
}

export type EventName = `on${Capitalize<string>}`;
export type Tuple = [name: string, count?: number, ...rest: boolean[]];

export function parse(input: string): number;
export function parse(input: number): string;
export function parse(input: string | number): string | number {
  return typeof input === "string" ? Number.parseInt(input, 10) : String(input);
}

function sealed<T extends { new (...args: any[]): object }>(constructor: T) {
  return class extends constructor {
    sealed = true;
  };
}

@sealed
export class Queue<T = unknown> implements Iterable<T> {
  #items: T[] = [];
  private static count = 0;

  constructor(private readonly name: string) {}

  push(...items: T[]): this {
    this.#items.push(...items);
    Queue.count += items.length;
    return this;
  }

  *[Symbol.iterator](): Iterator<T> {
    yield* this.#items;
  }
}

export async function drain(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8")!;
}
"#;

const TSX_LIST: &str = r#"import { useMemo, useState, type ReactNode } from "react";

export interface ListProps<T> {
  items: T[];
  render: (item: T) => ReactNode;
  keyOf?: (item: T) => string;
}

export function List<T,>({ items, render, keyOf = String }: ListProps<T>) {
  const [filter, setFilter] = useState<string>("");
  const visible = useMemo(
    () => items.filter((item) => keyOf(item).includes(filter)),
    [items, filter, keyOf],
  );

  return (
    <section aria-label="list">
      <input value={filter} onChange={(e) => setFilter(e.currentTarget.value)} />
      {visible.length > 0 ? (
        <ol>
          {visible.map((item) => (
            <li key={keyOf(item)}>{render(item)}</li>
          ))}
        </ol>
      ) : (
        <em>nothing matches {filter}</em>
      )}
    </section>
  );
}
"#;

const TSX_FORM: &str = r#"import React from "react";

type Status = "idle" | "saving" | "error";

const isError = (status: Status): status is "error" => status === "error";

export const Form: React.FC<{ onSave(name: string): Promise<void> }> = ({ onSave }) => {
  const [status, setStatus] = React.useState<Status>("idle");
  const input = React.useRef<HTMLInputElement>(null);

  async function submit(event: React.FormEvent<HTMLFormElement>) {
    event.preventDefault();
    setStatus("saving");
    try {
      await onSave(input.current!.value);
      setStatus("idle");
    } catch {
      setStatus("error");
    }
  }

  return (
    <form onSubmit={submit}>
      <label htmlFor="name">Name</label>
      <input id="name" ref={input} disabled={status === "saving"} />
      {isError(status) && <p role="alert">Saving failed, try again.</p>}
      <button type="submit" {...{ "data-status": status }}>
        Save
      </button>
    </form>
  );
};
"#;

const GO_WORKERS: &str = r#"package workers

import (
	"context"
	"fmt"
	"sync"
)

type Number interface {
	~int | ~int64 | ~float64
}

func Sum[T Number](values []T) T {
	var total T
	for _, v := range values {
		total += v
	}
	return total
}

type Result[T any] struct {
	Value T
	Err   error
}

func Run[T any](ctx context.Context, jobs []func() (T, error), workers int) <-chan Result[T] {
	out := make(chan Result[T], len(jobs))
	queue := make(chan func() (T, error))
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			for job := range queue {
				v, err := job()
				if err != nil {
					err = fmt.Errorf("worker %d: %w", id, err)
				}
				out <- Result[T]{Value: v, Err: err}
			}
		}(i)
	}
	go func() {
		defer close(out)
		defer wg.Wait()
		defer close(queue)
		for _, job := range jobs {
			select {
			case queue <- job:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
"#;

const GO_SERVER: &str = r#"package main

import (
	"encoding/json"
	"errors"
	"log"
	"net/http"
)

const (
	LevelLow = iota
	LevelHigh
)

type Shape interface {
	Area() float64
}

type Rect struct {
	W, H float64 `json:"w"`
}

func (r Rect) Area() float64 { return r.W * r.H }

var ErrEmpty = errors.New("empty")

func describe(v any) string {
	switch x := v.(type) {
	case Shape:
		return "shape"
	case string, []byte:
		return "text"
	case nil:
		return "nothing"
	default:
		_ = x
		return "other"
	}
}

func main() {
	http.HandleFunc("/area", func(w http.ResponseWriter, r *http.Request) {
		var rect Rect
		if err := json.NewDecoder(r.Body).Decode(&rect); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"area": rect.Area(), "kind": describe(rect)})
	})
outer:
	for i := range 3 {
		for j := 0; j < 3; j++ {
			if i*j > LevelHigh {
				break outer
			}
		}
	}
	log.Fatal(http.ListenAndServe(":8080", nil))
}
"#;

#[test]
fn realistic_files_are_valid() {
    let cases = [
        ("service.py", PY_SERVICE, Language::Python),
        ("script.pyi", PY_SCRIPT, Language::Python),
        ("lib.rs", RS_LIB, Language::Rust),
        ("main.rs", RS_MAIN, Language::Rust),
        ("store.mjs", JS_MODULE, Language::JavaScript),
        ("search.jsx", JSX_COMPONENT, Language::JavaScript),
        ("repo.ts", TS_REPO, Language::TypeScript),
        ("util.mts", TS_UTIL, Language::TypeScript),
        ("list.tsx", TSX_LIST, Language::Tsx),
        ("form.tsx", TSX_FORM, Language::Tsx),
        ("workers.go", GO_WORKERS, Language::Go),
        ("server.go", GO_SERVER, Language::Go),
    ];
    for (path, source, language) in cases {
        assert_eq!(
            check_syntax(path, source),
            SyntaxCheck::Valid { language },
            "{path}"
        );
    }
}

/// `sample` with `from` (which must occur exactly once) replaced by `to`.
fn mutate(sample: &str, from: &str, to: &str) -> String {
    assert_eq!(sample.matches(from).count(), 1, "{from:?} must occur once");
    sample.replacen(from, to, 1)
}

/// Asserts the message's shape: the headline, the numbered error line and a caret under
/// `column` (for lines short enough not to be clipped).
fn assert_well_formed(message: &str, line: u32, column: u32) {
    let headline = format!("syntax error at line {line}, column {column}: ");
    assert!(message.starts_with(&headline), "{message}");
    let lines: Vec<&str> = message.lines().collect();
    let numbered = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{line} |")))
        .unwrap_or_else(|| panic!("no line {line} in\n{message}"));
    let caret = lines[numbered + 1];
    let (gutter, pad) = caret.split_once(" | ").expect("caret line has a gutter");
    assert!(gutter.trim().is_empty(), "{message}");
    assert_eq!(
        pad.chars().count(),
        column as usize,
        "caret under column {column}\n{message}"
    );
    assert!(pad.ends_with('^'), "{message}");
}

/// Each case: name, source, expected (line, column), text the headline must contain.
type Case = (&'static str, String, (u32, u32), &'static str);

fn assert_errors(path: &str, cases: &[Case]) {
    for (name, source, (line, column), says) in cases {
        let SyntaxCheck::Invalid {
            line: got_line,
            column: got_column,
            message,
            ..
        } = check_syntax(path, source)
        else {
            panic!("{name}: expected a syntax error");
        };
        assert_eq!(
            (got_line, got_column),
            (*line, *column),
            "{name}:\n{message}"
        );
        let headline = message.lines().next().unwrap_or_default();
        assert!(
            headline.contains(says),
            "{name}: {headline:?} should say {says:?}"
        );
        assert_well_formed(&message, *line, *column);
    }
}

#[test]
fn python_errors_are_located() {
    assert_errors(
        "a.py",
        &[
            (
                "missing `:` after else",
                mutate(PY_SCRIPT, "else:", "else"),
                (39, 9),
                "unexpected `else`",
            ),
            (
                "missing `:` after try",
                mutate(
                    PY_SCRIPT,
                    "    try:\n        yield",
                    "    try\n        yield",
                ),
                (15, 5),
                "unexpected `try`",
            ),
            (
                "missing `:` after a match case",
                mutate(PY_SERVICE, "case _:", "case _"),
                (48, 9),
                "unexpected `case _`",
            ),
            // The grammar lets `-> float` continue onto the next line, so the error surfaces
            // at the body's first token; the excerpt still shows the header above it.
            (
                "missing `:` after a return annotation",
                mutate(
                    PY_SERVICE,
                    "def norm(self) -> float:",
                    "def norm(self) -> float",
                ),
                (18, 9),
                "unexpected `return`",
            ),
            (
                "unterminated string",
                mutate(PY_SERVICE, "\"origin\"", "\"origin"),
                (43, 20),
                "unexpected `\"` (unterminated string?)",
            ),
            (
                "stray `)`",
                mutate(PY_SERVICE, "self._loader(key)\n", "self._loader(key))\n"),
                (33, 40),
                "unexpected `)`",
            ),
            (
                "unclosed `(`",
                mutate(PY_SERVICE, "(\"a\", \"b\")))", "(\"a\", \"b\"))"),
                (54, 5),
                "unexpected `values = await asyncio.gather(",
            ),
            (
                "unclosed call in an f-string",
                mutate(PY_SERVICE, "{len(self.tags)}", "{len(self.tags}"),
                (21, 69),
                "missing `)`",
            ),
            (
                "error on the first line",
                mutate(PY_SERVICE, "import annotations", "import annotations)"),
                (1, 35),
                "unexpected `)`",
            ),
            (
                "error on the last line, no final newline",
                mutate(PY_SERVICE, "-n))\n", "-n)"),
                (56, 5),
                "unexpected `print(values, ",
            ),
        ],
    );
}

#[test]
fn rust_errors_are_located() {
    assert_errors(
        "a.rs",
        &[
            (
                "missing `;`",
                mutate(RS_LIB, "items.first()?.clone();", "items.first()?.clone()"),
                (41, 39),
                "missing `;`",
            ),
            (
                "missing `)` in a call",
                mutate(RS_LIB, "a.0.cmp(b.0)));", "a.0.cmp(b.0));"),
                (23, 70),
                "missing `)`",
            ),
            (
                "missing `)` in a signature",
                mutate(RS_MAIN, "fn area(shape: &Shape)", "fn area(shape: &Shape"),
                (13, 22),
                "missing `)`",
            ),
            (
                "missing `{` after if",
                mutate(RS_MAIN, "if *n > 100 {", "if *n > 100"),
                (34, 13),
                "unexpected `if *n > 100`",
            ),
            (
                "missing `}`",
                mutate(RS_LIB, "+= 1;\n        }\n", "+= 1;\n"),
                (43, 2),
                "missing `}` at end of file",
            ),
            (
                "unterminated string",
                mutate(RS_MAIN, "{bytes:?}\");", "{bytes:?});"),
                (42, 14),
                "(unterminated string?)",
            ),
            (
                "stray `)`",
                mutate(RS_MAIN, "=> w * h,", "=> w * h,)"),
                (17, 36),
                "unexpected `)`",
            ),
        ],
    );
}

#[test]
fn javascript_errors_are_located() {
    assert_errors(
        "a.js",
        &[
            (
                "missing `)`",
                mutate(JS_MODULE, "JSON.parse(text)))", "JSON.parse(text))"),
                (25, 64),
                "missing `)`",
            ),
            (
                "missing `}` of a getter",
                mutate(JS_MODULE, "size;\n  }\n", "size;\n"),
                (22, 9),
                "unexpected `load`",
            ),
            (
                "unterminated string",
                mutate(JS_MODULE, "\"node:path\"", "\"node:path"),
                (2, 1),
                "unexpected `import path from \"node:path;`",
            ),
            (
                "stray `)`",
                mutate(JS_MODULE, "this.limit = limit;", "this.limit = limit;)"),
                (14, 24),
                "unexpected `)`",
            ),
        ],
    );
    // An unclosed element swallows the JSX after it; the error is where that stops working.
    assert_errors(
        "a.jsx",
        &[(
            "unclosed JSX element",
            mutate(JSX_COMPONENT, "        </ul>\n", ""),
            (33, 8),
            "unexpected `}`",
        )],
    );
}

#[test]
fn typescript_errors_are_located() {
    assert_errors(
        "a.ts",
        &[
            (
                "missing `)`",
                mutate(TS_REPO, "isUser(value: unknown)", "isUser(value: unknown"),
                (20, 38),
                "missing `)`",
            ),
            (
                "missing `)` after a condition",
                mutate(
                    TS_REPO,
                    "if (item[key] === value)",
                    "if (item[key] === value",
                ),
                (38, 7),
                "unexpected `if (item[key] === value return item;`",
            ),
            (
                "missing `>`",
                mutate(TS_UTIL, "Promise<string>", "Promise<string"),
                (40, 62),
                "missing `>`",
            ),
            (
                "missing `{` of a class",
                mutate(
                    TS_UTIL,
                    "implements Iterable<T> {",
                    "implements Iterable<T>",
                ),
                (24, 3),
                "unexpected `#items: T`",
            ),
            (
                "unterminated string",
                mutate(TS_REPO, "kind: \"user\";", "kind: \"user;"),
                (7, 9),
                "(unterminated string?)",
            ),
            (
                "stray `]`",
                mutate(TS_UTIL, "return this;", "return this;]"),
                (32, 17),
                "unexpected `]`",
            ),
        ],
    );
}

#[test]
fn tsx_errors_are_located() {
    assert_errors(
        "a.tsx",
        &[
            (
                "missing `)`",
                mutate(
                    TSX_LIST,
                    "e.currentTarget.value)}",
                    "e.currentTarget.value}",
                ),
                (18, 77),
                "missing `)`",
            ),
            (
                "missing `}` in a JSX attribute",
                mutate(TSX_LIST, "<li key={keyOf(item)}>", "<li key={keyOf(item)>"),
                (22, 35),
                "unexpected `render(item)`",
            ),
            (
                "unclosed JSX element",
                mutate(TSX_LIST, "        </ol>\n", ""),
                (26, 8),
                "unexpected `}`",
            ),
            (
                "unterminated string",
                mutate(TSX_FORM, "setStatus(\"saving\");", "setStatus(\"saving);"),
                (13, 15),
                "(unterminated string?)",
            ),
            (
                "stray `)`",
                mutate(
                    TSX_FORM,
                    "setStatus(\"saving\");",
                    "setStatus(\"saving\"););",
                ),
                (13, 25),
                "unexpected `)`",
            ),
        ],
    );
}

#[test]
fn go_errors_are_located() {
    assert_errors(
        "a.go",
        &[
            (
                "missing `)`",
                mutate(GO_WORKERS, "id, err)", "id, err"),
                (37, 47),
                "missing `)`",
            ),
            (
                "missing `{` after if",
                mutate(GO_WORKERS, "if err != nil {", "if err != nil"),
                (36, 5),
                "unexpected `if err != nil`",
            ),
            (
                "missing `}` of a loop",
                mutate(GO_WORKERS, "Err: err}\n\t\t\t}\n", "Err: err}\n"),
                (40, 4),
                "missing `}`",
            ),
            (
                "missing `}` at the end",
                mutate(GO_SERVER, "nil))\n}\n", "nil))\n"),
                (59, 1),
                "missing `}` at end of file",
            ),
            (
                "unterminated string",
                mutate(GO_WORKERS, "\"sync\"", "\"sync"),
                (6, 7),
                "missing `\"`",
            ),
            (
                "stray `)`",
                mutate(GO_SERVER, "return \"text\"", "return \"text\")"),
                (32, 16),
                "unexpected `)`",
            ),
        ],
    );
}

#[test]
fn message_shows_numbered_context_and_a_caret() {
    let source = "import os\n\n\ndef f(:\n    pass\n\n\nx = 1\n";
    let SyntaxCheck::Invalid { message, .. } = check_syntax("a.py", source) else {
        panic!("expected a syntax error");
    };
    assert_eq!(
        message,
        "syntax error at line 4, column 7: missing `)`\n\
         2 |\n\
         3 |\n\
         4 | def f(:\n  \
           |       ^\n\
         5 |     pass\n\
         6 |"
    );
}

#[test]
fn errors_at_file_boundaries_do_not_break_the_excerpt() {
    let cases: &[(&str, &str, (u32, u32))] = &[
        ("a.py", ")", (1, 1)),
        ("a.py", ")\nx = 1\n", (1, 1)),
        ("a.py", "x = 1\ny = 2\nz = 3 +", (3, 1)),
        ("a.py", "x = (\n", (1, 1)),
        ("a.go", "package main\n\nfunc main() {", (3, 13)),
        ("a.js", "function f() {\n  return 1;", (2, 12)),
        ("a.rs", "fn main() {\n    let x = 1;\n", (1, 1)),
    ];
    for (path, source, (line, column)) in cases {
        match check_syntax(path, source) {
            SyntaxCheck::Invalid {
                line: l,
                column: c,
                message,
                ..
            } => {
                assert_eq!((l, c), (*line, *column), "{source:?}\n{message}");
                assert_well_formed(&message, *line, *column);
            }
            other => panic!("{source:?}: {other:?}"),
        }
    }
}

#[test]
fn columns_count_characters_and_excerpts_drop_carriage_returns() {
    let SyntaxCheck::Invalid {
        line,
        column,
        message,
        ..
    } = check_syntax("a.py", "x = 1\r\ns = 'héllo wörld' )\r\n")
    else {
        panic!("expected a syntax error");
    };
    assert_eq!((line, column), (2, 19));
    assert!(!message.contains('\r'), "{message:?}");
    assert_well_formed(&message, 2, 19);
}

#[test]
fn long_lines_are_clipped_around_the_error() {
    let source = format!("const x = [{}1 +];\n", "1, ".repeat(2000));
    let SyntaxCheck::Invalid {
        column, message, ..
    } = check_syntax("min.js", &source)
    else {
        panic!("expected a syntax error");
    };
    assert_eq!(column, 6014);
    assert!(message.len() < 600, "{message}");
    let lines: Vec<&str> = message.lines().collect();
    let shown = lines[1]
        .split_once(" | ")
        .map(|(_, text)| text)
        .unwrap_or_default();
    let caret = lines[2]
        .split_once(" | ")
        .map(|(_, pad)| pad)
        .unwrap_or_default();
    let under_caret = shown.chars().nth(caret.chars().count() - 1);
    assert_eq!(under_caret, Some('+'), "{message}");
}

#[test]
fn nul_bytes_are_invalid() {
    let SyntaxCheck::Invalid {
        line,
        column,
        message,
        ..
    } = check_syntax("main.go", "package main\n\nvar x = 1\0\n")
    else {
        panic!("expected a syntax error");
    };
    assert_eq!((line, column), (3, 10));
    assert!(message.contains("NUL byte"), "{message}");
    assert_well_formed(&message, 3, 10);
    // Only files the gate can parse are judged.
    assert_eq!(check_syntax("blob.bin", "\0"), SyntaxCheck::Unsupported);
}

#[test]
fn empty_and_blank_files_are_valid_syntax() {
    for path in ["a.py", "a.rs", "a.js", "a.ts", "a.tsx", "a.go"] {
        for source in ["", "\n", "  \n\t\n"] {
            assert!(
                matches!(check_syntax(path, source), SyntaxCheck::Valid { .. }),
                "{path} {source:?}"
            );
        }
    }
}

/// Truncated and garbled output is what the gate sees most; none of it may panic, and every
/// verdict must point inside the file.
#[test]
fn never_panics_and_always_points_inside_the_file() {
    let samples = [
        ("a.py", PY_SERVICE),
        ("a.py", PY_SCRIPT),
        ("a.rs", RS_LIB),
        ("a.rs", RS_MAIN),
        ("a.js", JS_MODULE),
        ("a.jsx", JSX_COMPONENT),
        ("a.ts", TS_REPO),
        ("a.ts", TS_UTIL),
        ("a.tsx", TSX_LIST),
        ("a.tsx", TSX_FORM),
        ("a.go", GO_WORKERS),
        ("a.go", GO_SERVER),
    ];
    let deep = "([{".repeat(5_000);
    let garbage = ["\u{feff}", "\\", "'''", "`", "\r\r\n", "é)", "}}}}", &deep];
    for (path, sample) in samples {
        let cuts = sample.char_indices().map(|(i, _)| i).step_by(3);
        let pieces = cuts.flat_map(|i| [&sample[..i], &sample[i..]]);
        for source in pieces.chain(garbage) {
            if let SyntaxCheck::Invalid {
                line,
                column,
                message,
                ..
            } = check_syntax(path, source)
            {
                assert!(
                    line as usize <= source.split('\n').count(),
                    "{path} {source:?}"
                );
                assert_well_formed(&message, line, column);
            }
        }
    }
}

#[test]
fn parsers_are_per_thread() {
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    assert!(matches!(
                        check_syntax("a.py", PY_SCRIPT),
                        SyntaxCheck::Valid { .. }
                    ));
                    assert!(matches!(
                        check_syntax("a.go", GO_SERVER),
                        SyntaxCheck::Valid { .. }
                    ));
                    assert!(matches!(
                        check_syntax("a.rs", "fn f("),
                        SyntaxCheck::Invalid { .. }
                    ));
                }
            });
        }
    });
}

#[test]
fn language_from_path() {
    let cases = [
        ("src/app.py", Some(Language::Python)),
        ("typings/app.pyi", Some(Language::Python)),
        ("src/lib.rs", Some(Language::Rust)),
        ("web/app.js", Some(Language::JavaScript)),
        ("web/app.mjs", Some(Language::JavaScript)),
        ("web/app.cjs", Some(Language::JavaScript)),
        ("web/App.jsx", Some(Language::JavaScript)),
        ("web/app.ts", Some(Language::TypeScript)),
        ("web/app.mts", Some(Language::TypeScript)),
        ("web/app.cts", Some(Language::TypeScript)),
        ("web/types.d.ts", Some(Language::TypeScript)),
        ("web/App.tsx", Some(Language::Tsx)),
        ("cmd/main.go", Some(Language::Go)),
        ("Cargo.toml", None),
        ("Makefile", None),
        (".py", None),
        ("pkg.py/README", None),
        ("APP.PY", None),
        ("", None),
    ];
    for (path, language) in cases {
        assert_eq!(Language::from_path(path), language, "{path}");
    }
    let names = [
        (Language::Python, "python"),
        (Language::Rust, "rust"),
        (Language::JavaScript, "javascript"),
        (Language::TypeScript, "typescript"),
        (Language::Tsx, "tsx"),
        (Language::Go, "go"),
    ];
    for (language, name) in names {
        assert_eq!(language.name(), name);
    }
}

#[test]
fn verdicts_become_findings() {
    assert_eq!(check_syntax("a.py", PY_SCRIPT).to_finding("a.py"), None);

    let invalid = check_syntax("src/a.py", "def f(:\n    pass\n");
    let finding = invalid
        .to_finding("src/a.py")
        .expect("an invalid file has a finding");
    assert!(finding.is_error());
    assert_eq!(finding.rule, "syntax");
    assert_eq!(finding.location(), "src/a.py:1");
    assert!(
        finding
            .message
            .starts_with("syntax error at line 1, column 7: missing `)`")
    );

    let unsupported = check_syntax("Cargo.toml", "[package]").to_finding("Cargo.toml");
    let unsupported = unsupported.expect("an unchecked file has a finding");
    assert_eq!(unsupported.severity, pitcrew_core::Severity::Info);
    assert_eq!(
        unsupported.message,
        "no syntax checker for `.toml` files; not checked"
    );
    assert_eq!(unsupported.file.as_deref(), Some("Cargo.toml"));

    let bare = SyntaxCheck::Unsupported
        .to_finding("Makefile")
        .expect("a finding");
    assert_eq!(
        bare.message,
        "no syntax checker for files without an extension; not checked"
    );
}
