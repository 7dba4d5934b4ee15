/** The tiers: one LanguageModel interface over stlm's tiny models, llama.cpp's GGUF models and OpenAI-compatible endpoints, and the router. */
export * from './types.js';
export { LocalModel, type LocalModelOptions } from './local.js';
export { OpenAIModel, EndpointError, type OpenAIModelOptions } from './openai.js';
export { LlamaCppModel, openLlamaCppModel } from './llamacpp.js';
export { Router, RouteError, estimateCost, type RouteAttempt, type RouteConstraints, type RouteDecision, type RouteTier, type RouterOptions, type RoutedResult } from './router.js';
export { loadTiersConfig, parseTiersConfig, openTier, TiersConfigError, type TierEntry, type TiersConfig } from './config.js';
export { routerFromConfig } from './open.js';
export { aiSdkModel } from './ai-sdk.js';
export { parseMeasuredFigures, readMeasuredFigures, MeasuredFiguresError, type MeasuredFigures } from './measured.js';
export { EscalationModel, choiceFeatures, type ChoiceView, type EscalationExample, type EscalationFit, type EscalationPrediction } from './escalation.js';
