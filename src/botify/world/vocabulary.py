"""Words the generator builds its world from: genre families, moods, countries, names."""

GENRE_FAMILIES: dict[str, list[str]] = {
    "rock": ["rock", "indie rock", "punk", "metal", "alternative", "grunge", "post-rock"],
    "pop": ["pop", "synth-pop", "k-pop", "dance pop", "indie pop", "europop"],
    "electronic": ["house", "techno", "trance", "ambient", "drum and bass", "dubstep"],
    "urban": ["hip hop", "trap", "r&b", "soul", "funk", "grime"],
    "jazz": ["jazz", "blues", "swing", "bossa nova", "bebop"],
    "classical": ["classical", "opera", "soundtrack", "baroque", "minimalism"],
    "roots": ["folk", "country", "bluegrass", "singer-songwriter", "americana"],
    "world": ["reggae", "latin", "afrobeat", "flamenco", "salsa", "cumbia"],
}

MOODS = [
    "happy", "sad", "energetic", "calm", "dark", "romantic",
    "melancholic", "uplifting", "aggressive", "dreamy",
]

COUNTRIES = {
    "US": 30, "GB": 12, "DE": 6, "FR": 5, "SE": 4, "CA": 4, "AU": 3, "JP": 4, "KR": 3,
    "BR": 4, "MX": 3, "ES": 3, "IT": 3, "NL": 2, "NO": 2, "RU": 3, "NG": 2, "JM": 1,
    "AR": 2, "IN": 3, "IE": 1, "FI": 1, "PL": 1, "CO": 1,
}

ADJECTIVES = [
    "Velvet", "Electric", "Silent", "Golden", "Broken", "Neon", "Wild", "Crystal", "Lonely",
    "Burning", "Frozen", "Hidden", "Midnight", "Scarlet", "Silver", "Distant", "Restless",
    "Gentle", "Hollow", "Savage", "Sweet", "Faded", "Blue", "Endless", "Lucky", "Paper",
    "Stone", "Summer", "Winter", "Quiet", "Radiant", "Falling", "Rising", "Secret", "Sacred",
    "Crooked", "Cosmic", "Little", "Northern", "Southern", "Wandering", "Bitter", "Honey",
]

NOUNS = [
    "River", "Heart", "Sky", "Fire", "Road", "Dream", "Ocean", "City", "Moon", "Shadow",
    "Garden", "Storm", "Light", "Rain", "Echo", "Mirror", "Train", "Wolf", "Rose", "Ghost",
    "Harbor", "Desert", "Window", "Signal", "Horizon", "Machine", "Letter", "Island",
    "Forest", "Mountain", "Satellite", "Lantern", "Diamond", "Thunder", "Sparrow", "Tide",
    "Avenue", "Circus", "Engine", "Comet", "Orchard", "Canyon", "Carnival", "Prophet",
]

VERBS = [
    "Chasing", "Holding", "Leaving", "Dancing with", "Waiting for", "Running from",
    "Calling", "Dreaming of", "Burning", "Finding", "Losing", "Remember",
]

FIRST_NAMES = [
    "Mara", "Leo", "Ava", "Jonas", "Nina", "Oscar", "Iris", "Felix", "Luna", "Hugo", "Zoe",
    "Elias", "Maya", "Theo", "Clara", "Ravi", "Sofia", "Kai", "Yuki", "Amara", "Diego",
    "Ingrid", "Malik", "Rosa", "Sven", "Lina", "Omar", "Vera", "Jin", "Ada",
]

LAST_NAMES = [
    "Quinn", "Holt", "Marsh", "Reyes", "Lindqvist", "Okafor", "Bell", "Sato", "Moreau",
    "Kowalski", "Vance", "Novak", "Ferreira", "Blackwood", "Ito", "Haddad", "Larsen",
    "Costa", "Winter", "Park", "Romero", "Fischer", "Adeyemi", "Dubois", "Kerr",
]
