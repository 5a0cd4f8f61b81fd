//! Registers a tool with a fuzzed schema and checks fuzzed arguments against
//! it: never a panic, only `Ok` or a precise error.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    name: &'a str,
    schema: &'a str,
    arguments: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    errand_server::tools::fuzz_tool_input(input.name, input.schema, input.arguments);
});
