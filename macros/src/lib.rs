//! `#[query]`: a Weft query from a plain function, as salsa's
//! `#[salsa::tracked]` and turbo-tasks' `#[turbo_tasks::function]`. Use it
//! through its re-export, `weft_queries::query`, whose documentation has
//! the full description and an example.
//!
//! For `fn name(cx: &Cx<Db>, k1: K1, k2: &K2) -> V { body }` the macro
//! emits, with the function's visibility:
//!
//! - `struct name {}`: the query type, implementing `weft_queries::Query`
//!   with `Key = (K1, K2)` (one parameter: that type; none: `()`),
//!   `Value = V`, `NAME = "name"`, and `compute` running `body` with each
//!   key parameter bound (a `&K2` parameter borrows the key, a `K1` one
//!   gets a clone);
//! - `fn name(cx, k1, k2: K2) -> V`: reads the query (`cx.get::<name>`);
//! - `trait NameQuery` with `cx.name(k1, k2)` and `cx.try_name(k1, k2)`,
//!   implemented for `Cx<'_, Db>`.
//!
//! Options: `recover = path`, `describe = path`, `dense` or
//! `dense = path`, `name = "text"`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Error, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, Result, ReturnType,
    Token, Type,
};

/// Defines a query from a function; see `weft_queries::query` for the
/// documentation (this crate is its implementation).
#[proc_macro_attribute]
pub fn query(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = syn::parse_macro_input!(item as ItemFn);
    let expanded = syn::parse::<Options>(attr).and_then(|options| expand(options, func.clone()));
    match expanded {
        Ok(tokens) => tokens.into(),
        // The function itself stays, so that its callers and imports do
        // not add errors and warnings of their own to the one that matters.
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(quote!(#func));
            out.into()
        }
    }
}

/// The attribute's options.
#[derive(Default)]
struct Options {
    recover: Option<syn::Path>,
    describe: Option<syn::Path>,
    /// `Some(None)`: `dense` (`usize::try_from(key)`); `Some(Some(p))`:
    /// `dense = p`.
    dense: Option<Option<syn::Path>>,
    name: Option<LitStr>,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let mut options = Options::default();
        let items = Punctuated::<Opt, Token![,]>::parse_terminated(input)?;
        for opt in items {
            let name = opt.name.clone();
            let taken = match &opt.name.to_string()[..] {
                "recover" => options.recover.replace(opt.path()?).is_some(),
                "describe" => options.describe.replace(opt.path()?).is_some(),
                "dense" => {
                    let path = opt.value.map(|v| v.into_path()).transpose()?;
                    options.dense.replace(path).is_some()
                }
                "name" => options.name.replace(opt.lit()?).is_some(),
                other => {
                    return Err(Error::new(
                        opt.name.span(),
                        format!(
                            "unknown option `{other}`: expected `recover = path`, \
                             `describe = path`, `dense`, `dense = path` or `name = \"text\"`"
                        ),
                    ))
                }
            };
            if taken {
                return Err(Error::new(
                    name.span(),
                    format!("option `{name}` given twice"),
                ));
            }
        }
        Ok(options)
    }
}

/// One option: `name` or `name = value`.
struct Opt {
    name: Ident,
    value: Option<OptValue>,
}

enum OptValue {
    Path(syn::Path),
    Lit(LitStr),
}

impl OptValue {
    fn into_path(self) -> Result<syn::Path> {
        match self {
            OptValue::Path(p) => Ok(p),
            OptValue::Lit(l) => Err(Error::new(l.span(), "expected a path, not a string")),
        }
    }
}

impl Opt {
    fn path(self) -> Result<syn::Path> {
        let span = self.name.span();
        match self.value {
            Some(v) => v.into_path(),
            None => Err(Error::new(
                span,
                format!(
                    "option `{}` needs a value: `{} = path`",
                    self.name, self.name
                ),
            )),
        }
    }

    fn lit(self) -> Result<LitStr> {
        match self.value {
            Some(OptValue::Lit(l)) => Ok(l),
            Some(OptValue::Path(p)) => {
                Err(Error::new(p.span(), "expected a string: `name = \"text\"`"))
            }
            None => Err(Error::new(
                self.name.span(),
                "option `name` needs a value: `name = \"text\"`",
            )),
        }
    }
}

impl Parse for Opt {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let name: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            if input.peek(LitStr) {
                Some(OptValue::Lit(input.parse()?))
            } else {
                Some(OptValue::Path(input.parse()?))
            }
        } else {
            None
        };
        Ok(Opt { name, value })
    }
}

/// A key parameter: its name, its type as written, and whether it
/// borrows the key (`&K`).
struct KeyParam {
    name: Ident,
    ty: Type,
    by_ref: bool,
}

impl KeyParam {
    /// The key's own type (`K` for `&K`).
    fn key_ty(&self) -> &Type {
        match &self.ty {
            Type::Reference(r) if self.by_ref => &r.elem,
            t => t,
        }
    }
}

fn expand(options: Options, func: ItemFn) -> Result<TokenStream2> {
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(Error::new(
            a.span(),
            "a query cannot be `async`: providers run on fibers and wait by suspending",
        ));
    }
    if let Some(c) = &sig.constness {
        return Err(Error::new(c.span(), "a query cannot be `const`"));
    }
    if let Some(u) = &sig.unsafety {
        return Err(Error::new(u.span(), "a query cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            "a query cannot be generic: write one `#[query]` function per key and value type",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(Error::new(v.span(), "a query cannot be variadic"));
    }
    let value = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            return Err(Error::new(
                sig.ident.span(),
                "a query returns its value: add `-> Value` (a query without one is pointless: it is memoized)",
            ))
        }
    };
    let mut inputs = sig.inputs.iter();
    let cx_msg = "a query's first parameter is its context: `cx: &Cx<Db>`";
    let (cx_name, cx_ty) = match inputs.next() {
        Some(FnArg::Typed(t)) => {
            let name = match &*t.pat {
                Pat::Ident(p) => p.ident.clone(),
                Pat::Wild(w) => Ident::new("_cx", w.span()),
                other => return Err(Error::new(other.span(), cx_msg)),
            };
            match &*t.ty {
                Type::Reference(r) if r.mutability.is_none() => (name, (*r.elem).clone()),
                other => return Err(Error::new(other.span(), cx_msg)),
            }
        }
        Some(FnArg::Receiver(r)) => {
            return Err(Error::new(
                r.span(),
                "a query is a free function, not a method",
            ))
        }
        None => return Err(Error::new(sig.paren_token.span.join(), cx_msg)),
    };
    let mut keys = Vec::new();
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(t) = arg else {
            return Err(Error::new(
                arg.span(),
                "a query is a free function, not a method",
            ));
        };
        let name = match &*t.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            Pat::Wild(_) => format_ident!("__weft_key{}", i),
            other => {
                return Err(Error::new(
                    other.span(),
                    "a key parameter must be a plain name: `name: Type`",
                ))
            }
        };
        let by_ref = matches!(&*t.ty, Type::Reference(r) if r.mutability.is_none());
        if let Type::Reference(r) = &*t.ty {
            if r.mutability.is_some() {
                return Err(Error::new(
                    t.ty.span(),
                    "a key cannot be `&mut`: keys are shared and immutable",
                ));
            }
        }
        keys.push(KeyParam {
            name,
            ty: (*t.ty).clone(),
            by_ref,
        });
    }

    let vis = &func.vis;
    let ident = &sig.ident;
    let attrs = &func.attrs;
    let docs: Vec<_> = attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let body = &func.block;
    let query_name = options
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let db = db_type(&cx_ty)?;
    let key_tys: Vec<&Type> = keys.iter().map(KeyParam::key_ty).collect();
    let key_ty = match &key_tys[..] {
        [one] => quote!(#one),
        many => quote!((#(#many,)*)),
    };
    let key_names: Vec<&Ident> = keys.iter().map(|k| &k.name).collect();
    // `compute`'s bindings: a borrow of the key, or a clone of it.
    let bind = match &keys[..] {
        [] => quote!(),
        [one] => {
            let (name, ty) = (&one.name, &one.ty);
            if one.by_ref {
                quote!(let #name: #ty = __weft_key;)
            } else {
                quote!(let #name: #ty = ::core::clone::Clone::clone(__weft_key);)
            }
        }
        many => {
            let parts = many.iter().enumerate().map(|(i, k)| {
                let (name, ty) = (&k.name, &k.ty);
                let index = syn::Index::from(i);
                if k.by_ref {
                    quote!(let #name: #ty = &__weft_key.#index;)
                } else {
                    quote!(let #name: #ty = ::core::clone::Clone::clone(&__weft_key.#index);)
                }
            });
            quote!(#(#parts)*)
        }
    };
    let key_value = match &key_names[..] {
        [one] => quote!(#one),
        many => quote!((#(#many,)*)),
    };
    let params: Vec<TokenStream2> = keys
        .iter()
        .map(|k| {
            let (name, ty) = (&k.name, k.key_ty());
            quote!(#name: #ty)
        })
        .collect();
    let q = quote!(::weft_queries);
    let recover = options.recover.as_ref().map(|path| {
        quote_spanned! {path.span()=>
            fn recover(
                cx: &#q::Cx<'_, Self::Db>,
                cycle: &#q::Cycle,
                key: &Self::Key,
            ) -> ::core::option::Option<Self::Value> {
                #path(cx, cycle, key)
            }
        }
    });
    let describe = options.describe.as_ref().map(|path| {
        quote_spanned! {path.span()=>
            fn describe(db: &Self::Db, key: &Self::Key) -> ::std::string::String {
                #path(db, key)
            }
        }
    });
    let dense = options.dense.as_ref().map(|path| match path {
        Some(path) => quote_spanned! {path.span()=>
            #[inline]
            fn dense_index(key: &Self::Key) -> ::core::option::Option<usize> {
                #path(key)
            }
        },
        None => quote! {
            #[inline]
            fn dense_index(key: &Self::Key) -> ::core::option::Option<usize> {
                <usize as ::core::convert::TryFrom<Self::Key>>::try_from(
                    ::core::clone::Clone::clone(key),
                )
                .ok()
            }
        },
    });
    let trait_name = format_ident!("{}Query", camel(&ident.to_string()), span = ident.span());
    let try_ident = format_ident!("try_{}", ident);
    let trait_doc = format!(
        "`cx.{ident}(..)` and `cx.try_{ident}(..)`: the query [`{ident}`](struct@{ident}) \
         as methods of the query context (made by `#[query]`)."
    );
    let struct_doc = format!(
        "The query type of [`{ident}`](fn@{ident}) (made by `#[query]`): read it with \
         `cx.get::<{ident}>(key)`, `{ident}(cx, ..)` or `cx.{ident}(..)`."
    );
    let cx_real = quote!(#q::Cx<'_, #db>);
    Ok(quote! {
        #(#docs)*
        #[doc = ""]
        #[doc = #struct_doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        impl #q::Query for #ident {
            type Db = #db;
            type Key = #key_ty;
            type Value = #value;
            const NAME: &'static str = #query_name;

            #[allow(unused_variables, clippy::needless_borrow)]
            fn compute(#cx_name: &#cx_real, __weft_key: &Self::Key) -> #value {
                #bind
                #body
            }

            #recover
            #describe
            #dense
        }

        #(#attrs)*
        #[inline]
        #[allow(clippy::needless_pass_by_value)]
        #vis fn #ident(cx: &#cx_real, #(#params),*) -> #value {
            cx.get::<#ident>(#key_value)
        }

        #[doc = #trait_doc]
        #vis trait #trait_name {
            #(#docs)*
            fn #ident(&self, #(#params),*) -> #value;
            #[doc = "The result of the query, errors included (see `Cx::try_get`)."]
            fn #try_ident(&self, #(#params),*)
                -> ::core::result::Result<#value, #q::QueryError>;
        }

        impl #trait_name for #cx_real {
            #[inline]
            fn #ident(&self, #(#params),*) -> #value {
                self.get::<#ident>(#key_value)
            }
            #[inline]
            fn #try_ident(&self, #(#params),*)
                -> ::core::result::Result<#value, #q::QueryError> {
                self.try_get::<#ident>(#key_value)
            }
        }
    })
}

/// The `Db` of a context type as written (`Cx<Db>`, `Cx<'_, Db>`, or an
/// alias such as `Cx<'_>`): `<Cx<'static, ..> as Context>::Db`.
fn db_type(cx: &Type) -> Result<TokenStream2> {
    let Type::Path(p) = cx else {
        return Err(Error::new(
            cx.span(),
            "a query's first parameter is its context: `cx: &Cx<Db>`",
        ));
    };
    let mut p = p.clone();
    let last = p.path.segments.last_mut().expect("a path has a segment");
    let statik = GenericArgument::Lifetime(syn::Lifetime::new("'static", Span::call_site()));
    match &mut last.arguments {
        PathArguments::None => {
            last.arguments = PathArguments::AngleBracketed(syn::parse_quote!(<'static>));
        }
        PathArguments::AngleBracketed(args) => {
            let mut has_lifetime = false;
            for arg in args.args.iter_mut() {
                if let GenericArgument::Lifetime(_) = arg {
                    *arg = statik.clone();
                    has_lifetime = true;
                }
            }
            if !has_lifetime {
                args.args.insert(0, statik);
            }
        }
        PathArguments::Parenthesized(a) => {
            return Err(Error::new(
                a.span(),
                "a query's first parameter is its context: `cx: &Cx<Db>`",
            ))
        }
    }
    Ok(quote!(<#p as ::weft_queries::Context>::Db))
}

/// `def_map` → `DefMap`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}
