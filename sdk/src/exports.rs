//! The glue between the kind traits and the generated bindings. Plugin
//! authors use only the `export_*!` macros.

use crate::{Config, PluginError};
use std::cell::OnceCell;
use std::thread::LocalKey;

/// Where the export glue keeps the plugin built for this instance.
pub type PluginCell<T> = OnceCell<Result<T, PluginError>>;

/// Runs `call` on the instance's plugin, building it from the host's
/// configuration on first use. A configuration error is kept and returned by
/// every call, so a misconfigured plugin fails loudly instead of half-working.
pub fn with_plugin<T: 'static, R>(
    cell: &'static LocalKey<PluginCell<T>>,
    new: fn(Config) -> Result<T, PluginError>,
    call: impl FnOnce(&T) -> Result<R, PluginError>,
) -> Result<R, PluginError> {
    cell.with(|cell| match cell.get_or_init(|| new(Config::from_host())) {
        Ok(plugin) => call(plugin),
        Err(error) => Err(error.clone()),
    })
}

pub(crate) fn host_config() -> String {
    crate::bindings::host::config()
}

pub(crate) fn host_message_text() -> String {
    crate::bindings::risk::sluice::plugin::request_content::message_text()
}

/// Exports a [`Router`](crate::Router) implementation as the plugin's router.
#[macro_export]
macro_rules! export_router {
    ($plugin:ty) => {
        const _: () = {
            use $crate::bindings::router::exports::sluice::plugin::router as wit;
            ::std::thread_local! {
                static PLUGIN: $crate::__private::PluginCell<$plugin> =
                    const { ::std::cell::OnceCell::new() };
            }
            struct Export;
            impl wit::Guest for Export {
                fn route(
                    request: &$crate::bindings::types::Request,
                ) -> ::std::result::Result<::std::vec::Vec<u32>, $crate::PluginError> {
                    $crate::__private::with_plugin(&PLUGIN, <$plugin as $crate::Router>::new, |p| {
                        $crate::Router::route(p, &$crate::Request::from_host(request))
                    })
                }
            }
            $crate::bindings::router::export_router_world!(Export with_types_in $crate::bindings::router);
        };
    };
}

/// Exports a [`Risk`](crate::Risk) implementation as the plugin's risk check.
#[macro_export]
macro_rules! export_risk {
    ($plugin:ty) => {
        const _: () = {
            use $crate::bindings::risk::exports::sluice::plugin::risk as wit;
            ::std::thread_local! {
                static PLUGIN: $crate::__private::PluginCell<$plugin> =
                    const { ::std::cell::OnceCell::new() };
            }
            struct Export;
            impl wit::Guest for Export {
                fn check(
                    request: &$crate::bindings::types::Request,
                ) -> ::std::result::Result<$crate::Verdict, $crate::PluginError> {
                    $crate::__private::with_plugin(&PLUGIN, <$plugin as $crate::Risk>::new, |p| {
                        $crate::Risk::check(
                            p,
                            &$crate::Request::from_host(request),
                            &$crate::RequestContent::from_host(),
                        )
                    })
                }
            }
    $crate::bindings::risk::export_risk_world!(Export with_types_in $crate::bindings::risk);
        };
    };
}

/// Exports a [`Pricing`](crate::Pricing) implementation as the plugin's pricing.
#[macro_export]
macro_rules! export_pricing {
    ($plugin:ty) => {
        const _: () = {
            use $crate::bindings::pricing::exports::sluice::plugin::pricing as wit;
            ::std::thread_local! {
                static PLUGIN: $crate::__private::PluginCell<$plugin> =
                    const { ::std::cell::OnceCell::new() };
            }
            struct Export;
            impl wit::Guest for Export {
                fn price(
                    request: &$crate::bindings::types::Request,
                    used: $crate::Usage,
                    prices: $crate::PriceTable,
                ) -> ::std::result::Result<u64, $crate::PluginError> {
                    $crate::__private::with_plugin(&PLUGIN, <$plugin as $crate::Pricing>::new, |p| {
                        $crate::Pricing::price(p, &$crate::Request::from_host(request), &used, &prices)
                    })
                }
            }
            $crate::bindings::pricing::export_pricing_world!(Export with_types_in $crate::bindings::pricing);
        };
    };
}

/// Exports a [`Translator`](crate::Translator) implementation as the
/// plugin's translator.
#[macro_export]
macro_rules! export_translator {
    ($plugin:ty) => {
        const _: () = {
            use $crate::bindings::translator::exports::sluice::plugin::translator as wit;
            use ::std::result::Result;
            use ::std::vec::Vec;
            ::std::thread_local! {
                static PLUGIN: $crate::__private::PluginCell<$plugin> =
                    const { ::std::cell::OnceCell::new() };
            }
            fn with<R>(
                call: impl FnOnce(&$plugin) -> Result<R, $crate::PluginError>,
            ) -> Result<R, $crate::PluginError> {
                $crate::__private::with_plugin(&PLUGIN, <$plugin as $crate::Translator>::new, call)
            }

            struct Stream(
                ::std::cell::RefCell<
                    Result<<$plugin as $crate::Translator>::Stream, $crate::PluginError>,
                >,
            );
            impl wit::GuestStreamTranslator for Stream {
                fn new(direction: $crate::Direction) -> Self {
                    Stream(::std::cell::RefCell::new(with(|p| {
                        Ok($crate::Translator::stream(p, direction))
                    })))
                }
                fn push(&self, chunk: Vec<u8>) -> Result<Vec<u8>, $crate::PluginError> {
                    match &mut *self.0.borrow_mut() {
                        Ok(stream) => $crate::StreamTranslator::push(stream, &chunk),
                        Err(error) => Err(error.clone()),
                    }
                }
                fn finish(&self) -> Result<$crate::StreamEnd, $crate::PluginError> {
                    match &mut *self.0.borrow_mut() {
                        Ok(stream) => $crate::StreamTranslator::finish(stream),
                        Err(error) => Err(error.clone()),
                    }
                }
            }

            struct Export;
            impl wit::Guest for Export {
                type StreamTranslator = Stream;
                fn request_to_canonical(body: Vec<u8>) -> Result<Vec<u8>, $crate::PluginError> {
                    with(|p| $crate::Translator::request_to_canonical(p, body))
                }
                fn request_from_canonical(
                    body: Vec<u8>,
                    model: ::std::string::String,
                ) -> Result<$crate::UpstreamRequest, $crate::PluginError> {
                    with(|p| $crate::Translator::request_from_canonical(p, body, &model))
                }
                fn request_passthrough(
                    body: Vec<u8>,
                    model: ::std::string::String,
                    headers: Vec<(::std::string::String, ::std::string::String)>,
                ) -> Result<$crate::UpstreamRequest, $crate::PluginError> {
                    with(|p| $crate::Translator::request_passthrough(p, body, &model, &headers))
                }
                fn response_to_canonical(body: Vec<u8>) -> Result<Vec<u8>, $crate::PluginError> {
                    with(|p| $crate::Translator::response_to_canonical(p, body))
                }
                fn response_from_canonical(body: Vec<u8>) -> Result<Vec<u8>, $crate::PluginError> {
                    with(|p| $crate::Translator::response_from_canonical(p, body))
                }
                fn response_usage(
                    body: Vec<u8>,
                ) -> Result<::std::option::Option<$crate::Usage>, $crate::PluginError> {
                    with(|p| $crate::Translator::response_usage(p, &body))
                }
                fn error_to_canonical(
                    error: $crate::ErrorResponse,
                ) -> Result<$crate::ErrorResponse, $crate::PluginError> {
                    with(|p| $crate::Translator::error_to_canonical(p, error))
                }
                fn error_from_canonical(
                    error: $crate::ErrorResponse,
                ) -> Result<$crate::ErrorResponse, $crate::PluginError> {
                    with(|p| $crate::Translator::error_from_canonical(p, error))
                }
            }
            $crate::bindings::translator::export_translator_world!(Export with_types_in $crate::bindings::translator);
        };
    };
}
